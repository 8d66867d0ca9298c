/**
 * WebAssembly text of the kernels behind symmetricEigen (see eig-kernels.ts, which also holds
 * their JavaScript fallbacks and states what each computes). Pointers are byte offsets of float64
 * arrays in the module's memory, counts are in elements. The loops run on f64x2 pairs; the
 * tridiagonalization kernels take two matrix rows at a time so each load of a vector entry
 * serves both. scripts/build-gemm-wasm.ts compiles it.
 */

import { LANE_CHUNK } from './eig-kernels.js';

const get = (name: string) => `(local.get $${name})`;
const set = (name: string, value: string) => `(local.set $${name} ${value})`;
const int = (value: number) => `(i32.const ${value})`;
const plus = (a: string, b: string) => `(i32.add ${a} ${b})`;
const times = (a: string, b: string) => `(i32.mul ${a} ${b})`;
const bytes = (index: string) => `(i32.shl ${index} ${int(3)})`;
const f64 = (pointer: string) => `(f64.load ${pointer})`;
const v128 = (pointer: string) => `(v128.load ${pointer})`;
const storeF64 = (pointer: string, value: string) => `(f64.store ${pointer} ${value})`;
const storeV128 = (pointer: string, value: string) => `(v128.store ${pointer} ${value})`;
const mulAdd = (kind: 'f64' | 'f64x2', acc: string, a: string, b: string) => `(${kind}.add ${acc} (${kind}.mul ${a} ${b}))`;
const laneSum = (v: string) => `(f64.add (f64x2.extract_lane 0 ${v}) (f64x2.extract_lane 1 ${v}))`;
const zero2 = '(f64x2.splat (f64.const 0))';

/**
 * One step of a loop on a pair of columns (f64x2) or on the odd last one (f64): its loads, stores
 * and arithmetic, and a splatted register read as a scalar where the step is narrow.
 */
interface Width {
  readonly kind: 'f64' | 'f64x2';
  /** Ends the names of the step's own locals, which are typed by width. */
  readonly suffix: string;
  readonly load: (pointer: string) => string;
  readonly store: (pointer: string, value: string) => string;
  readonly splat: (register: string) => string;
}
const pairWidth: Width = { kind: 'f64x2', suffix: 'Pair', load: v128, store: storeV128, splat: get };
const singleWidth: Width = { kind: 'f64', suffix: 'One', load: f64, store: storeF64, splat: (r) => `(f64x2.extract_lane 0 ${get(r)})` };

/** `while (condition) body`, labelled so loops can nest. */
function whileLoop(label: string, condition: string, body: string): string {
  return `(block $${label}_end (loop $${label}
    (br_if $${label}_end (i32.eqz ${condition}))
    ${body}
    (br $${label})))`;
}

/** Parameters and locals as 'name type'. */
function func(name: string, params: string[], locals: string[], body: string): string {
  return `(func (export "${name}") ${params.map((p) => `(param $${p})`).join(' ')}
    ${locals.map((l) => `(local $${l})`).join(' ')}
    ${body})`;
}

/** p[from..n) = B·v, B the trailing block from `from` of the n×n matrix w, read from its upper triangle. */
function symvUpper(): string {
  // Row i's stored B_ij (j > i) adds to p_i (a dot product) and to p_j (an axpy into p); the
  // dot products gather in acc (pairs of columns) and s (the odd last column).
  const column = (width: Width, acc: readonly [string, string]) => {
    const { kind, suffix, load, store, splat } = width;
    const [b0, b1, vj] = ['b0', 'b1', 'vj'].map((name) => name + suffix) as [string, string, string];
    return `
    ${set(b0, load(plus(get('row0'), get('q'))))}
    ${set(b1, load(plus(get('row1'), get('q'))))}
    ${set(vj, load(plus(get('v'), get('q'))))}
    ${set(acc[0], mulAdd(kind, get(acc[0]), get(b0), get(vj)))}
    ${set(acc[1], mulAdd(kind, get(acc[1]), get(b1), get(vj)))}
    ${set('pq', plus(get('p'), get('q')))}
    ${store(get('pq'), mulAdd(kind, mulAdd(kind, load(get('pq')), get(b0), splat('vi0')), get(b1), splat('vi1')))}`;
  };
  const pairBody = `${column(pairWidth, ['acc0', 'acc1'])}
    ${set('q', plus(get('q'), int(16)))}`;
  const lastColumn = `(if (i32.lt_u ${get('q')} ${get('end')}) (then ${column(singleWidth, ['s0', 's1'])}))`;
  const rowPair = `
    ${set('row0', plus(get('w'), bytes(times(get('i'), get('n')))))}
    ${set('row1', plus(get('row0'), bytes(get('n'))))}
    ${set('q', bytes(get('i')))}
    ${set('vi0', `(v128.load64_splat ${plus(get('v'), get('q'))})`)}
    ${set('vi1', `(v128.load64_splat ${plus(get('v'), plus(get('q'), int(8)))})`)}
    ;; the 2×2 diagonal block: B_ii, B_i,i+1, B_i+1,i+1
    ${set('b0One', f64(plus(get('row0'), plus(get('q'), int(8)))))}
    ${set('s0', mulAdd('f64', `(f64.mul ${f64(plus(get('row0'), get('q')))} ${singleWidth.splat('vi0')})`, get('b0One'), singleWidth.splat('vi1')))}
    ${set('s1', `(f64.mul ${f64(plus(get('row1'), plus(get('q'), int(8))))} ${singleWidth.splat('vi1')})`)}
    ${set('pq', plus(get('p'), plus(get('q'), int(8))))}
    ${storeF64(get('pq'), mulAdd('f64', f64(get('pq')), get('b0One'), singleWidth.splat('vi0')))}
    ${set('acc0', zero2)}
    ${set('acc1', zero2)}
    ${set('q', plus(get('q'), int(16)))}
    ${whileLoop('pairs', `(i32.le_u ${plus(get('q'), int(16))} ${get('end')})`, pairBody)}
    ${lastColumn}
    ${set('pq', plus(get('p'), bytes(get('i'))))}
    ${storeF64(get('pq'), `(f64.add ${f64(get('pq'))} (f64.add ${get('s0')} ${laneSum(get('acc0'))}))`)}
    ${set('pq', plus(get('pq'), int(8)))}
    ${storeF64(get('pq'), `(f64.add ${f64(get('pq'))} (f64.add ${get('s1')} ${laneSum(get('acc1'))}))`)}
    ${set('i', plus(get('i'), int(2)))}`;
  const body = `
    ${set('end', bytes(get('n')))}
    ${set('q', bytes(get('from')))}
    ${whileLoop('clear', `(i32.lt_u ${get('q')} ${get('end')})`, `${storeF64(plus(get('p'), get('q')), '(f64.const 0)')} ${set('q', plus(get('q'), int(8)))}`)}
    ${set('i', get('from'))}
    ${whileLoop('rows', `(i32.le_u ${plus(get('i'), int(2))} ${get('n')})`, rowPair)}
    ;; an odd count leaves the last row, whose only stored entry is its diagonal
    (if (i32.lt_u ${get('i')} ${get('n')}) (then
      ${set('q', bytes(get('i')))}
      ${set('pq', plus(get('p'), get('q')))}
      ${storeF64(get('pq'), mulAdd('f64', f64(get('pq')), f64(plus(plus(get('w'), bytes(times(get('i'), get('n')))), get('q'))), f64(plus(get('v'), get('q')))))}))`;
  return func(
    'symv_upper',
    ['w i32', 'v i32', 'p i32', 'n i32', 'from i32'],
    ['i i32', 'q i32', 'end i32', 'pq i32', 'row0 i32', 'row1 i32', 'b0One f64', 'b1One f64', 'vjOne f64', 's0 f64', 's1 f64',
      'vi0 v128', 'vi1 v128', 'b0Pair v128', 'b1Pair v128', 'vjPair v128', 'acc0 v128', 'acc1 v128'],
    body,
  );
}

/** B_ij −= v_i·z_j + z_i·v_j over the upper triangle of the trailing block from `from`. */
function rank2Upper(): string {
  // Row `r` of the pair (0: row i, 1: row i+1) at the column offset q.
  const update = ({ kind, load, store, splat }: Width, r: number) => {
    const at = plus(get(`row${r}`), get('q'));
    const vz = `(${kind}.mul ${splat(`vi${r}`)} ${load(plus(get('z'), get('q')))})`;
    return store(at, `(${kind}.sub ${load(at)} ${mulAdd(kind, vz, splat(`zi${r}`), load(plus(get('v'), get('q'))))})`);
  };
  const startRow = (r: number) => `
    ${set(`vi${r}`, `(v128.load64_splat ${plus(get('v'), plus(get('q'), int(8 * r)))})`)}
    ${set(`zi${r}`, `(v128.load64_splat ${plus(get('z'), plus(get('q'), int(8 * r)))})`)}`;
  const rowPair = `
    ${set('row0', plus(get('w'), bytes(times(get('i'), get('n')))))}
    ${set('row1', plus(get('row0'), bytes(get('n'))))}
    ${set('q', bytes(get('i')))}
    ${startRow(0)}
    ${startRow(1)}
    ${update(singleWidth, 0)}
    ${set('q', plus(get('q'), int(8)))}
    ${whileLoop('pairs', `(i32.le_u ${plus(get('q'), int(16))} ${get('end')})`, `
      ${update(pairWidth, 0)}
      ${update(pairWidth, 1)}
      ${set('q', plus(get('q'), int(16)))}`)}
    (if (i32.lt_u ${get('q')} ${get('end')}) (then ${update(singleWidth, 0)} ${update(singleWidth, 1)}))
    ${set('i', plus(get('i'), int(2)))}`;
  const body = `
    ${set('end', bytes(get('n')))}
    ${set('i', get('from'))}
    ${whileLoop('rows', `(i32.le_u ${plus(get('i'), int(2))} ${get('n')})`, rowPair)}
    ;; an odd count leaves the last row, whose only stored entry is its diagonal
    (if (i32.lt_u ${get('i')} ${get('n')}) (then
      ${set('row0', plus(get('w'), bytes(times(get('i'), get('n')))))}
      ${set('q', bytes(get('i')))}
      ${startRow(0)}
      ${update(singleWidth, 0)}))`;
  return func(
    'rank2_upper',
    ['w i32', 'v i32', 'z i32', 'n i32', 'from i32'],
    ['i i32', 'q i32', 'end i32', 'row0 i32', 'row1 i32', 'vi0 v128', 'zi0 v128', 'vi1 v128', 'zi1 v128'],
    body,
  );
}

const PANEL_REGISTERS = LANE_CHUNK / 2;
const PANEL_ROW_BYTES = 8 * LANE_CHUNK;
const registers = (prefix: string) => Array.from({ length: PANEL_REGISTERS }, (_, r) => `${prefix}${r}`);

/** `body` for each of the $panels panels of $n rows from $x, with $panel pointing at the panel. */
function forEachPanel(body: string): string {
  return `
    ${set('panel', get('x'))}
    ${set('panelsEnd', plus(get('x'), times(get('panels'), times(get('n'), int(PANEL_ROW_BYTES)))))}
    ${whileLoop('panels', `(i32.lt_u ${get('panel')} ${get('panelsEnd')})`, `${body}
      ${set('panel', plus(get('panel'), times(get('n'), int(PANEL_ROW_BYTES))))}`)}`;
}

/**
 * One QL sweep replayed on rows l..m, the rotation for i read 8·(i − l) bytes before c and s
 * (the log runs from i = m−1 down). Row i+1 after rotation i is the row rotation i+1 mixes, so it
 * stays in registers: one load and one store per row.
 */
function rotateSweep(): string {
  const carry = registers('carry'), next = registers('next');
  const panel = `
    ${set('row', plus(get('panel'), times(get('l'), int(PANEL_ROW_BYTES))))}
    ${carry.map((c, r) => set(c, v128(plus(get('row'), int(16 * r))))).join('\n')}
    ${set('cp', get('c'))}
    ${set('sp', get('s'))}
    ${set('i', get('l'))}
    ${whileLoop('sweep', `(i32.lt_u ${get('i')} ${get('m')})`, `
      ${set('cc', `(v128.load64_splat ${get('cp')})`)}
      ${set('ss', `(v128.load64_splat ${get('sp')})`)}
      ${set('nextRow', plus(get('row'), int(PANEL_ROW_BYTES)))}
      ${next.map((x, r) => set(x, v128(plus(get('nextRow'), int(16 * r))))).join('\n')}
      ${carry.map((c, r) => storeV128(plus(get('row'), int(16 * r)), mulAdd('f64x2', `(f64x2.mul ${get('cc')} ${get(c)})`, get('ss'), get(next[r]!)))).join('\n')}
      ${carry.map((c, r) => set(c, `(f64x2.sub (f64x2.mul ${get('cc')} ${get(next[r]!)}) (f64x2.mul ${get('ss')} ${get(c)}))`)).join('\n')}
      ${set('row', get('nextRow'))}
      ${set('cp', `(i32.sub ${get('cp')} ${int(8)})`)}
      ${set('sp', `(i32.sub ${get('sp')} ${int(8)})`)}
      ${set('i', plus(get('i'), int(1)))}`)}
    ${carry.map((c, r) => storeV128(plus(get('row'), int(16 * r)), get(c))).join('\n')}`;
  return func(
    'rotate_sweep',
    ['x i32', 'panels i32', 'n i32', 'c i32', 's i32', 'l i32', 'm i32'],
    ['i i32', 'panel i32', 'panelsEnd i32', 'row i32', 'nextRow i32', 'cp i32', 'sp i32', 'cc v128', 'ss v128',
      ...carry.map((c) => `${c} v128`), ...next.map((x) => `${x} v128`)],
    forEachPanel(panel),
  );
}

/** Rows from..n−1 ← (I − t·v·vᵀ)·rows: per panel, the dots vᵀx in registers, then the update. */
function reflect(): string {
  const acc = registers('acc');
  const rowsOf = (label: string, body: string) => `
    ${set('i', get('from'))}
    ${set('row', plus(get('panel'), times(get('from'), int(PANEL_ROW_BYTES))))}
    ${whileLoop(label, `(i32.lt_u ${get('i')} ${get('n')})`, `
      ${set('vi', `(v128.load64_splat ${plus(get('v'), bytes(get('i')))})`)}
      ${body}
      ${set('row', plus(get('row'), int(PANEL_ROW_BYTES)))}
      ${set('i', plus(get('i'), int(1)))}`)}`;
  const panel = `
    ${acc.map((a) => set(a, zero2)).join('\n')}
    ${rowsOf('dots', acc.map((a, r) => set(a, mulAdd('f64x2', get(a), get('vi'), v128(plus(get('row'), int(16 * r)))))).join('\n'))}
    ${acc.map((a) => set(a, `(f64x2.mul ${get(a)} ${get('tt')})`)).join('\n')}
    ${rowsOf('update', acc.map((a, r) => {
      const at = plus(get('row'), int(16 * r));
      return storeV128(at, `(f64x2.sub ${v128(at)} (f64x2.mul ${get('vi')} ${get(a)}))`);
    }).join('\n'))}`;
  return func(
    'reflect',
    ['x i32', 'panels i32', 'n i32', 'v i32', 't f64', 'from i32'],
    ['i i32', 'panel i32', 'panelsEnd i32', 'row i32', 'vi v128', 'tt v128', ...acc.map((a) => `${a} v128`)],
    `${set('tt', `(f64x2.splat ${get('t')})`)} ${forEachPanel(panel)}`,
  );
}

export function eigWat(): string {
  return `(module
  (memory (export "memory") 1)
  ${symvUpper()}
  ${rank2Upper()}
  ${rotateSweep()}
  ${reflect()}
)
`;
}
