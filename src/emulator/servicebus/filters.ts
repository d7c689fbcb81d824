/**
 * Subscription rules: correlation filters and a small SQL-92 subset of Service Bus SQL filters, evaluated against the
 * facts of a message. Supported SQL: comparisons (= <> != < <= > >=), AND, OR, NOT, parentheses, IS [NOT] NULL,
 * [NOT] IN (...), [NOT] LIKE with % and _, EXISTS(name), TRUE/FALSE, string/number/boolean literals, and names that are
 * application properties (`color`, `user.color`, `[my prop]`) or system properties (`sys.Label`, `sys.To`, ...).
 */
import type { MessageFacts } from './message.js';

export interface CorrelationFilter {
  correlationId?: string;
  messageId?: string;
  to?: string;
  replyTo?: string;
  subject?: string;
  sessionId?: string;
  replyToSessionId?: string;
  contentType?: string;
  applicationProperties?: Record<string, string | number | boolean>;
}

export type RuleFilter = { kind: 'true' } | { kind: 'false' } | { kind: 'correlation'; filter: CorrelationFilter } | { kind: 'sql'; expression: string; compiled: SqlNode };

export interface Rule {
  name: string;
  filter: RuleFilter;
}

export class FilterSyntaxError extends Error {
  override readonly name = 'FilterSyntaxError';
}

export function correlationMatches(filter: CorrelationFilter, facts: MessageFacts): boolean {
  const pairs: Array<[string | undefined, string | undefined]> = [
    [filter.correlationId, facts.correlationId],
    [filter.messageId, facts.messageId],
    [filter.to, facts.to],
    [filter.replyTo, facts.replyTo],
    [filter.subject, facts.subject],
    [filter.sessionId, facts.sessionId],
    [filter.replyToSessionId, facts.replyToSessionId],
    [filter.contentType, facts.contentType],
  ];
  for (const [wanted, actual] of pairs) {
    if (wanted !== undefined && wanted !== null && wanted !== actual) return false;
  }
  for (const [key, wanted] of Object.entries(filter.applicationProperties ?? {})) {
    const actual = facts.applicationProperties[key];
    if (actual === undefined || !looseEquals(actual, wanted)) return false;
  }
  return true;
}

function looseEquals(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (a instanceof Date || b instanceof Date) return String(a) === String(b);
  return a === b;
}

export function ruleMatches(rule: Rule, facts: MessageFacts): boolean {
  switch (rule.filter.kind) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'correlation':
      return correlationMatches(rule.filter.filter, facts);
    case 'sql':
      return evaluate(rule.filter.compiled, facts) === true;
  }
}

export function sqlRule(name: string, expression: string): Rule {
  return { name, filter: { kind: 'sql', expression, compiled: parseSql(expression) } };
}

// ---------------------------------------------------------------------------------------------------------------
// SQL subset

export type SqlNode =
  | { t: 'lit'; v: string | number | boolean | null }
  | { t: 'name'; sys: boolean; name: string }
  | { t: 'not'; e: SqlNode }
  | { t: 'and' | 'or'; l: SqlNode; r: SqlNode }
  | { t: 'cmp'; op: string; l: SqlNode; r: SqlNode }
  | { t: 'isnull'; e: SqlNode; negate: boolean }
  | { t: 'in'; e: SqlNode; list: SqlNode[]; negate: boolean }
  | { t: 'like'; e: SqlNode; pattern: RegExp; negate: boolean }
  | { t: 'exists'; name: SqlNode };

type Token = { k: 'word' | 'str' | 'num' | 'op' | 'name'; v: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new FilterSyntaxError(`unterminated string in "${text}"`);
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += text[i];
        i++;
      }
      tokens.push({ k: 'str', v: value });
    } else if (c === '[') {
      const end = text.indexOf(']', i);
      if (end < 0) throw new FilterSyntaxError(`unterminated [name] in "${text}"`);
      tokens.push({ k: 'name', v: text.slice(i + 1, end) });
      i = end + 1;
    } else if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(text[i + 1] ?? '') && !lastIsValue(tokens))) {
      const match = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/.exec(text.slice(i))!;
      tokens.push({ k: 'num', v: match[0] });
      i += match[0].length;
    } else if (/[A-Za-z_$@]/.test(c)) {
      const match = /^[A-Za-z_$@][A-Za-z0-9_$@.-]*/.exec(text.slice(i))!;
      tokens.push({ k: 'word', v: match[0] });
      i += match[0].length;
    } else {
      const two = text.slice(i, i + 2);
      if (two === '<>' || two === '!=' || two === '<=' || two === '>=') {
        tokens.push({ k: 'op', v: two });
        i += 2;
      } else if ('=<>(),'.includes(c)) {
        tokens.push({ k: 'op', v: c });
        i++;
      } else {
        throw new FilterSyntaxError(`unexpected character "${c}" in "${text}"`);
      }
    }
  }
  return tokens;
}

function lastIsValue(tokens: Token[]): boolean {
  const last = tokens[tokens.length - 1];
  return last !== undefined && (last.k !== 'op' || last.v === ')');
}

export function parseSql(text: string): SqlNode {
  const tokens = tokenize(text);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const isWord = (word: string): boolean => {
    const token = peek();
    return token !== undefined && token.k === 'word' && token.v.toUpperCase() === word;
  };
  const isOp = (op: string): boolean => {
    const token = peek();
    return token !== undefined && token.k === 'op' && token.v === op;
  };
  const expectOp = (op: string): void => {
    if (!isOp(op)) throw new FilterSyntaxError(`expected "${op}" in "${text}"`);
    pos++;
  };

  const parseOr = (): SqlNode => {
    let left = parseAnd();
    while (isWord('OR')) {
      pos++;
      left = { t: 'or', l: left, r: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): SqlNode => {
    let left = parseNot();
    while (isWord('AND')) {
      pos++;
      left = { t: 'and', l: left, r: parseNot() };
    }
    return left;
  };
  const parseNot = (): SqlNode => {
    if (isWord('NOT')) {
      pos++;
      return { t: 'not', e: parseNot() };
    }
    return parsePredicate();
  };
  const parsePredicate = (): SqlNode => {
    if (isWord('EXISTS')) {
      pos++;
      expectOp('(');
      const name = parseOperand();
      expectOp(')');
      return { t: 'exists', name };
    }
    const left = parseOperand();
    const token = peek();
    if (token?.k === 'op' && ['=', '<>', '!=', '<', '<=', '>', '>='].includes(token.v)) {
      pos++;
      return { t: 'cmp', op: token.v === '!=' ? '<>' : token.v, l: left, r: parseOperand() };
    }
    if (isWord('IS')) {
      pos++;
      const negate = isWord('NOT');
      if (negate) pos++;
      if (!isWord('NULL')) throw new FilterSyntaxError(`expected NULL after IS in "${text}"`);
      pos++;
      return { t: 'isnull', e: left, negate };
    }
    let negate = false;
    if (isWord('NOT')) {
      negate = true;
      pos++;
    }
    if (isWord('IN')) {
      pos++;
      expectOp('(');
      const list: SqlNode[] = [parseOperand()];
      while (isOp(',')) {
        pos++;
        list.push(parseOperand());
      }
      expectOp(')');
      return { t: 'in', e: left, list, negate };
    }
    if (isWord('LIKE')) {
      pos++;
      const pattern = peek();
      if (pattern?.k !== 'str') throw new FilterSyntaxError(`LIKE needs a string pattern in "${text}"`);
      pos++;
      const source = pattern.v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.');
      return { t: 'like', e: left, pattern: new RegExp(`^${source}$`, 's'), negate };
    }
    if (negate) throw new FilterSyntaxError(`expected IN or LIKE after NOT in "${text}"`);
    return left;
  };
  const parseOperand = (): SqlNode => {
    const token = peek();
    if (token === undefined) throw new FilterSyntaxError(`unexpected end of "${text}"`);
    pos++;
    if (token.k === 'op' && token.v === '(') {
      const inner = parseOr();
      expectOp(')');
      return inner;
    }
    if (token.k === 'str') return { t: 'lit', v: token.v };
    if (token.k === 'num') return { t: 'lit', v: Number(token.v) };
    if (token.k === 'name') return { t: 'name', sys: false, name: token.v };
    if (token.k === 'word') {
      const upper = token.v.toUpperCase();
      if (upper === 'TRUE') return { t: 'lit', v: true };
      if (upper === 'FALSE') return { t: 'lit', v: false };
      if (upper === 'NULL') return { t: 'lit', v: null };
      const lower = token.v.toLowerCase();
      if (lower.startsWith('sys.')) return { t: 'name', sys: true, name: token.v.slice(4) };
      if (lower.startsWith('user.')) return { t: 'name', sys: false, name: token.v.slice(5) };
      return { t: 'name', sys: false, name: token.v };
    }
    throw new FilterSyntaxError(`unexpected "${token.v}" in "${text}"`);
  };

  if (tokens.length === 0) throw new FilterSyntaxError('an empty SQL filter');
  const tree = parseOr();
  if (pos !== tokens.length) throw new FilterSyntaxError(`unexpected "${tokens[pos]!.v}" in "${text}"`);
  return tree;
}

function systemProperty(name: string, facts: MessageFacts): unknown {
  switch (name.toLowerCase()) {
    case 'messageid':
      return facts.messageId;
    case 'correlationid':
      return facts.correlationId;
    case 'to':
      return facts.to;
    case 'replyto':
      return facts.replyTo;
    case 'label':
    case 'subject':
      return facts.subject;
    case 'sessionid':
      return facts.sessionId;
    case 'replytosessionid':
      return facts.replyToSessionId;
    case 'contenttype':
      return facts.contentType;
    default:
      return undefined;
  }
}

function value(node: SqlNode, facts: MessageFacts): unknown {
  if (node.t === 'lit') return node.v;
  if (node.t === 'name') {
    const found = node.sys ? systemProperty(node.name, facts) : facts.applicationProperties[node.name];
    return found === undefined ? null : found instanceof Date ? found.getTime() : found;
  }
  return evaluate(node, facts);
}

/** Three-valued logic: true, false, or null (unknown). */
function evaluate(node: SqlNode, facts: MessageFacts): boolean | null {
  switch (node.t) {
    case 'lit':
      return typeof node.v === 'boolean' ? node.v : null;
    case 'name': {
      const v = value(node, facts);
      return typeof v === 'boolean' ? v : null;
    }
    case 'not': {
      const v = evaluate(node.e, facts);
      return v === null ? null : !v;
    }
    case 'and': {
      const l = evaluate(node.l, facts);
      if (l === false) return false;
      const r = evaluate(node.r, facts);
      if (r === false) return false;
      return l === null || r === null ? null : true;
    }
    case 'or': {
      const l = evaluate(node.l, facts);
      if (l === true) return true;
      const r = evaluate(node.r, facts);
      if (r === true) return true;
      return l === null || r === null ? null : false;
    }
    case 'cmp': {
      const l = value(node.l, facts);
      const r = value(node.r, facts);
      if (l === null || r === null) return null;
      const c = compare(l, r);
      if (c === null) return node.op === '<>' ? true : node.op === '=' ? false : null;
      switch (node.op) {
        case '=':
          return c === 0;
        case '<>':
          return c !== 0;
        case '<':
          return c < 0;
        case '<=':
          return c <= 0;
        case '>':
          return c > 0;
        default:
          return c >= 0;
      }
    }
    case 'isnull': {
      const isNull = value(node.e, facts) === null;
      return node.negate ? !isNull : isNull;
    }
    case 'in': {
      const v = value(node.e, facts);
      if (v === null) return null;
      const found = node.list.some((item) => compare(v, value(item, facts)) === 0);
      return node.negate ? !found : found;
    }
    case 'like': {
      const v = value(node.e, facts);
      if (typeof v !== 'string') return null;
      const found = node.pattern.test(v);
      return node.negate ? !found : found;
    }
    case 'exists': {
      if (node.name.t !== 'name') return false;
      return node.name.sys ? systemProperty(node.name.name, facts) !== undefined : node.name.name in facts.applicationProperties;
    }
  }
}

function compare(a: unknown, b: unknown): number | null {
  if (typeof a === 'number' && typeof b === 'number') return a === b ? 0 : a < b ? -1 : 1;
  if (typeof a === 'string' && typeof b === 'string') return a === b ? 0 : a < b ? -1 : 1;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a === b ? 0 : null;
  return null;
}
