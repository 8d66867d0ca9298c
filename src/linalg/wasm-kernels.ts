/**
 * What the WebAssembly kernels (gemm.ts, eig-kernels.ts) share: the switch that benchmarks and
 * tests flip to compare them with their JavaScript fallbacks, and the instantiation of a module
 * from its committed base64 bytes.
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
