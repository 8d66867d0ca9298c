/**
 * PEFT's `rank_pattern` and `alpha_pattern` keys are Python regular expressions matched against
 * module names. They come from a stranger's adapter_config.json, and a backtracking engine (such
 * as JavaScript's RegExp) takes exponential time on keys like `(.*)*!`. So a key is compiled to a
 * Thompson automaton and run over the name in one pass, in time linear in the name (times the
 * key's size). The subset read: literals, `.`, classes `[a-z_]`, `\d \w \s` and their negations,
 * groups `( )`, `(?: )`, `(?P<name> )`, `|`, `* + ? {m} {m,} {m,n}` (lazy forms match the same
 * names), `^ $ \A \Z`. What needs backtracking (backreferences, lookaround) or is not a regular
 * expression at all is refused with the reason.
 */

/** A key that cannot be matched: the message says why. */
export class PatternSyntaxError extends Error {}

type CharTest = (c: string) => boolean;
type Node =
  | { readonly kind: 'char'; readonly test: CharTest }
  | { readonly kind: 'seq'; readonly items: readonly Node[] }
  | { readonly kind: 'alt'; readonly options: readonly Node[] }
  | { readonly kind: 'repeat'; readonly item: Node; readonly min: number; readonly max: number }
  | { readonly kind: 'assert'; readonly at: 'start' | 'end' };

/** Automaton states beyond this (counted repeats are expanded) make a key too large to accept. */
const MAX_STATES = 20_000;
/** Compilation steps beyond this likewise (nested counts of empty groups add steps, not states). */
const MAX_STEPS = 200_000;
/** Counted repeats above this are refused before expansion. */
const MAX_COUNT = 1000;

const ANY: CharTest = (c) => c !== '\n';
const DIGIT: CharTest = (c) => c >= '0' && c <= '9';
const WORD: CharTest = (c) => DIGIT(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
const SPACE: CharTest = (c) => c === ' ' || (c >= '\t' && c <= '\r');
const CLASS_ESCAPES: Readonly<Partial<Record<string, CharTest>>> = {
  d: DIGIT, w: WORD, s: SPACE,
  D: (c) => !DIGIT(c), W: (c) => !WORD(c), S: (c) => !SPACE(c),
};
const CHARACTER_ESCAPES: Readonly<Partial<Record<string, string>>> = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v' };

class Parser {
  private at = 0;
  constructor(private readonly text: string) {}

  parse(): Node {
    const node = this.alternation();
    if (this.at < this.text.length) throw new PatternSyntaxError(`unbalanced ) at position ${this.at}`);
    return node;
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.text[this.at] === '|') {
      this.at++;
      options.push(this.sequence());
    }
    return options.length === 1 ? options[0]! : { kind: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.at < this.text.length && this.text[this.at] !== '|' && this.text[this.at] !== ')') items.push(this.quantified());
    return { kind: 'seq', items };
  }

  private quantified(): Node {
    let node = this.atom();
    for (;;) {
      const bounds = this.quantifier();
      if (!bounds) return node;
      if (this.text[this.at] === '?') this.at++; // lazy: the same names match
      node = { kind: 'repeat', item: node, min: bounds[0], max: bounds[1] };
    }
  }

  private quantifier(): [number, number] | null {
    const c = this.text[this.at];
    if (c === '*' || c === '+' || c === '?') {
      this.at++;
      return c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    }
    if (c !== '{') return null;
    // As in Python, a brace that does not open a valid count is a literal.
    const m = /^\{(\d*)(,(\d*))?\}/.exec(this.text.slice(this.at, this.at + 24));
    if (!m || (m[1] === '' && m[2] === undefined)) return null;
    const min = m[1] === '' ? 0 : Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > MAX_COUNT || (max !== Infinity && max > MAX_COUNT)) throw new PatternSyntaxError(`repeat count above ${MAX_COUNT}`);
    if (max < min) throw new PatternSyntaxError(`repeat {${min},${max}} has its bounds reversed`);
    this.at += m[0].length;
    return [min, max];
  }

  private atom(): Node {
    const c = this.text[this.at++]!;
    switch (c) {
      case '(': return this.group();
      case '[': return { kind: 'char', test: this.charClass() };
      case '.': return { kind: 'char', test: ANY };
      case '^': return { kind: 'assert', at: 'start' };
      case '$': return { kind: 'assert', at: 'end' };
      case '\\': return this.escape();
      case '*': case '+': case '?':
        throw new PatternSyntaxError(`nothing to repeat at position ${this.at - 1}`);
      default: return literal(c);
    }
  }

  private group(): Node {
    if (this.text[this.at] === '?') {
      if (this.text.startsWith('?:', this.at)) this.at += 2;
      else {
        const named = /^\?P<[A-Za-z_]\w*>/.exec(this.text.slice(this.at));
        if (!named) throw new PatternSyntaxError(`group (${this.text.slice(this.at, this.at + 3)}... needs backtracking (lookaround, backreference) or flags, which are not read here`);
        this.at += named[0].length;
      }
    }
    const inner = this.alternation();
    if (this.text[this.at] !== ')') throw new PatternSyntaxError('missing )');
    this.at++;
    return inner;
  }

  private escape(): Node {
    const c = this.text[this.at++];
    if (c === undefined) throw new PatternSyntaxError('pattern ends with a lone backslash');
    if (c >= '0' && c <= '9') throw new PatternSyntaxError(`backreference \\${c} needs backtracking, which is not read here`);
    if (c === 'A') return { kind: 'assert', at: 'start' };
    if (c === 'Z') return { kind: 'assert', at: 'end' };
    if (c === 'b' || c === 'B') throw new PatternSyntaxError(`\\${c} (word boundary) is not read here`);
    const test = CLASS_ESCAPES[c];
    return test ? { kind: 'char', test } : literal(CHARACTER_ESCAPES[c] ?? c);
  }

  private charClass(): CharTest {
    const negated = this.text[this.at] === '^';
    if (negated) this.at++;
    const tests: CharTest[] = [];
    let first = true;
    for (;;) {
      const c = this.text[this.at++];
      if (c === undefined) throw new PatternSyntaxError('missing ]');
      if (c === ']' && !first) break;
      first = false;
      let low = c;
      if (c === '\\') {
        const e = this.text[this.at++];
        if (e === undefined) throw new PatternSyntaxError('missing ]');
        const test = CLASS_ESCAPES[e];
        if (test) {
          tests.push(test);
          continue;
        }
        low = CHARACTER_ESCAPES[e] ?? e;
      }
      if (this.text[this.at] === '-' && this.text[this.at + 1] !== undefined && this.text[this.at + 1] !== ']') {
        this.at++;
        let high = this.text[this.at++]!;
        if (high === '\\') {
          const e = this.text[this.at++];
          if (e === undefined) throw new PatternSyntaxError('missing ]');
          high = CHARACTER_ESCAPES[e] ?? e;
        }
        if (high < low) throw new PatternSyntaxError(`bad range ${low}-${high}`);
        tests.push((x) => x >= low && x <= high);
      } else {
        tests.push((x) => x === low);
      }
    }
    return negated ? (x) => !tests.some((t) => t(x)) : (x) => tests.some((t) => t(x));
  }
}

function literal(c: string): Node {
  return { kind: 'char', test: (x) => x === c };
}

type State =
  | { kind: 'char'; test: CharTest; out: number }
  | { kind: 'split'; outs: number[] }
  | { kind: 'assert'; at: 'start' | 'end'; out: number }
  | { kind: 'match' };

/** Thompson construction, from the end: each node is compiled with the state that follows it. */
class Compiler {
  readonly states: State[] = [{ kind: 'match' }];
  private steps = 0;

  compile(node: Node, next: number): number {
    if (++this.steps > MAX_STEPS) throw new PatternSyntaxError('pattern too large once its repeats are counted out');
    switch (node.kind) {
      case 'char': return this.add({ kind: 'char', test: node.test, out: next });
      case 'assert': return this.add({ kind: 'assert', at: node.at, out: next });
      case 'seq': return node.items.reduceRight((after, item) => this.compile(item, after), next);
      case 'alt': return this.add({ kind: 'split', outs: node.options.map((o) => this.compile(o, next)) });
      case 'repeat': {
        let after = next;
        if (node.max === Infinity) {
          const loop = this.add({ kind: 'split', outs: [] });
          (this.states[loop] as { outs: number[] }).outs.push(this.compile(node.item, loop), next);
          after = loop;
        } else {
          for (let k = node.min; k < node.max; k++) after = this.add({ kind: 'split', outs: [this.compile(node.item, after), next] });
        }
        for (let k = 0; k < node.min; k++) after = this.compile(node.item, after);
        return after;
      }
    }
  }

  private add(state: State): number {
    if (this.states.length >= MAX_STATES) throw new PatternSyntaxError('pattern too large once its repeats are counted out');
    this.states.push(state);
    return this.states.length - 1;
  }
}

/** A compiled key: `matches(name)` is PEFT's `re.match(rf"(.*\.)?({key})$", name)`. */
export interface ModulePattern {
  readonly source: string;
  matches(name: string): boolean;
}

export function compileModulePattern(key: string): ModulePattern {
  const pattern = new Parser(key).parse();
  // PEFT's match: an optional dotted prefix, the key, then the end of the name.
  const anyPrefix: Node = { kind: 'repeat', item: { kind: 'seq', items: [{ kind: 'repeat', item: { kind: 'char', test: ANY }, min: 0, max: Infinity }, literal('.')] }, min: 0, max: 1 };
  const whole: Node = { kind: 'seq', items: [anyPrefix, pattern, { kind: 'assert', at: 'end' }] };
  const compiler = new Compiler();
  const start = compiler.compile(whole, 0);
  const states = compiler.states;
  return { source: key, matches: (name) => run(states, start, name) };
}

/** One pass over the name holding the set of live states (Pike's simulation without captures). */
function run(states: readonly State[], start: number, name: string): boolean {
  const seen = new Int32Array(states.length).fill(-1);
  let generation = 0;
  const closure = (from: readonly number[], position: number): number[] => {
    const live: number[] = [];
    const stack = [...from];
    generation++;
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (seen[s] === generation) continue;
      seen[s] = generation;
      const state = states[s]!;
      if (state.kind === 'split') stack.push(...state.outs);
      else if (state.kind === 'assert') {
        if (state.at === 'start' ? position === 0 : position === name.length) stack.push(state.out);
      } else live.push(s);
    }
    return live;
  };
  let live = closure([start], 0);
  for (let i = 0; i < name.length && live.length > 0; i++) {
    const c = name[i]!;
    const next: number[] = [];
    for (const s of live) {
      const state = states[s]!;
      if (state.kind === 'char' && state.test(c)) next.push(state.out);
    }
    live = closure(next, i + 1);
  }
  return live.some((s) => states[s]!.kind === 'match');
}
