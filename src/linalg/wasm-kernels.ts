/**
 * What the WebAssembly kernels (gemm.ts, eig-kernels.ts) share: the switch that benchmarks and
 * tests flip to compare them with their JavaScript fallbacks, the instantiation of a module from
 * its committed base64 bytes, and the growth of its memory.
 */

let enabled = true;

/** Turn the WebAssembly kernels off or on (benchmarks and tests compare both paths). */
export function useWasmKernels(on: boolean): void {
  enabled = on;
}

export function wasmKernelsEnabled(): boolean {
  return enabled;
}

/** The exports of the module, or null when this runtime cannot compile it (no SIMD support). */
export function instantiateWasm(base64: string): WebAssembly.Exports | null {
  try {
    return new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(base64, 'base64')), {}).exports;
  } catch {
    return null;
  }
}

/** A module's memory as float64, grown first (in 64 KiB pages) to hold at least `bytes`. */
export function float64Heap(memory: WebAssembly.Memory, bytes: number): Float64Array {
  const have = memory.buffer.byteLength;
  if (have < bytes) memory.grow(Math.ceil((bytes - have) / 65536));
  return new Float64Array(memory.buffer);
}
