/** Public surface of the weight I/O layer. */
export * from './types.js';
export * from './errors.js';
export * from './dtypes.js';
export { MAX_HEADER_BYTES, readSafetensorsHeader, parseHeaderJson, type SafetensorsHeader } from './safetensors.js';
export {
  openTensorSource, assertFinite, matrixShape, elementCount, SafetensorsSource, DEFAULT_BUFFER_BYTES,
  type OpenOptions, type RawChunk,
} from './source.js';
export { encodeHeader, encodeValues, writeSafetensorsStreaming, type TensorSpec } from './writer.js';
