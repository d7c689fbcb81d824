/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it throws on any line a Prometheus
 * server would refuse (or that breaks the format's rules for families, labels and histograms).
 */

export interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PrometheusText {
  types: Record<string, string>;
  help: Record<string, string>;
  samples: PrometheusSample[];
  /** The value of the one sample with exactly these labels; undefined when there is none. */
  value(name: string, labels: Record<string, string>): number | undefined;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(text)) throw new Error(`not a number "${text}" in: ${line}`);
  return Number(text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let index = 0;
  while (index < text.length) {
    const equals = text.indexOf('=', index);
    if (equals < 0) throw new Error(`label without value in: ${line}`);
    const name = text.slice(index, equals).trim();
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name "${name}" in: ${line}`);
    if (text[equals + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let value = '';
    let position = equals + 2;
    for (;;) {
      const character = text[position];
      if (character === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (character === '"') break;
      if (character === '\n') throw new Error(`raw line feed in a label value: ${line}`);
      if (character === '\\') {
        const escaped = text[position + 1];
        if (escaped === 'n') value += '\n';
        else if (escaped === '\\' || escaped === '"') value += escaped;
        else throw new Error(`bad escape \\${escaped} in: ${line}`);
        position += 2;
        continue;
      }
      value += character;
      position += 1;
    }
    if (Object.hasOwn(labels, name)) throw new Error(`label ${name} repeated in: ${line}`);
    labels[name] = value;
    index = position + 1;
    if (text[index] === ',') index += 1;
    else if (index < text.length) throw new Error(`expected "," between labels in: ${line}`);
  }
  return labels;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;
}

export function parsePrometheusText(text: string): PrometheusText {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const types: Record<string, string> = {};
  const help: Record<string, string> = {};
  const samples: PrometheusSample[] = [];
  const seen = new Set<string>();
  const familyOf = (name: string): string | undefined => {
    if (types[name] !== undefined) return name;
    const base = name.replace(/_(?:bucket|sum|count)$/, '');
    return types[base] === 'histogram' ? base : undefined;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (match === null) continue;
      const [, kind, name, rest] = match as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      if (kind === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad type in: ${line}`);
        if (types[name] !== undefined) throw new Error(`TYPE repeated for ${name}`);
        if (samples.some((sample) => familyOf(sample.name) === name)) throw new Error(`TYPE after samples of ${name}`);
        types[name] = rest;
      } else {
        help[name] = rest;
      }
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const [, name, labelText, valueText] = match as unknown as [string, string, string | undefined, string];
    const labels = labelText === undefined ? {} : parseLabels(labelText, line);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new Error(`series repeated: ${line}`);
    seen.add(key);
    if (familyOf(name) === undefined) throw new Error(`sample of an undeclared family: ${line}`);
    samples.push({ name, labels, value: parseValue(valueText, line) });
  }
  for (const [family, type] of Object.entries(types)) {
    if (type !== 'histogram') continue;
    // Each label set (but `le`) is a histogram of its own; a family with no label set yet has no samples at all.
    const seriesOf = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).filter(([name]) => name !== 'le').sort(([a], [b]) => (a < b ? -1 : 1)));
    const familySamples = samples.filter((sample) => sample.name.startsWith(`${family}_`) && familyOf(sample.name) === family);
    for (const series of new Set(familySamples.map((sample) => seriesOf(sample.labels)))) {
      const inSeries = familySamples.filter((sample) => seriesOf(sample.labels) === series);
      const buckets = inSeries.filter((sample) => sample.name === `${family}_bucket`);
      const count = inSeries.find((sample) => sample.name === `${family}_count`)?.value;
      let previous = -Infinity;
      let previousCount = 0;
      for (const bucket of buckets) {
        const bound = parseValue(bucket.labels['le'] ?? '', `${family}_bucket`);
        if (bound <= previous) throw new Error(`${family} buckets are not in increasing order of le`);
        if (bucket.value < previousCount) throw new Error(`${family} buckets are not cumulative`);
        previous = bound;
        previousCount = bucket.value;
      }
      if (previous !== Infinity) throw new Error(`${family}${series} has no le="+Inf" bucket`);
      if (count !== previousCount) throw new Error(`${family}_count ${count} differs from its +Inf bucket ${previousCount}`);
    }
  }
  return {
    types,
    help,
    samples,
    value(name, labels) {
      return samples.find((sample) => seriesKey(sample.name, sample.labels) === seriesKey(name, labels))?.value;
    },
  };
}
