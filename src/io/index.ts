/** Public surface of the weight I/O layer. */
export * from './types.js';
export * from './errors.js';
export * from './dtypes.js';
export { MAX_HEADER_BYTES, readSafetensorsHeader, parseHeaderJson, openForReading, readRegularFile, type SafetensorsHeader } from './safetensors.js';
export {
  openTensorSource, assertFinite, assertTensorFinite, matrixShape, elementCount, SafetensorsSource, DEFAULT_BUFFER_BYTES, readJsonFile,
  type OpenOptions, type RawChunk,
} from './source.js';
export { encodeHeader, encodeValues, writeSafetensorsStreaming, type TensorSpec } from './writer.js';
