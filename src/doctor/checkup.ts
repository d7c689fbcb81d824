/**
 * One doctor run: checks in order, each bounded by a timeout (a black-holed address must not hang the run), each a
 * row with its verdict, what was found and, when it failed, what to change. A check that needs an earlier one (TLS
 * needs TCP) is not tried when that one failed, and says so.
 */

export interface CheckResult {
  /** Stable, dot-separated: `relay.tcp`, `servicebus.listen`, `clock`. */
  id: string;
  title: string;
  ok: boolean;
  /** Not tried: an earlier check it needs failed, or there was nothing to check. */
  skipped?: true;
  detail: string;
  /** What to change; present when ok is false. */
  advice?: string;
}

export interface DoctorReport {
  target: 'store' | 'cloud';
  ok: boolean;
  checks: CheckResult[];
}

export type Verdict = { ok: true; detail: string; skipped?: true } | { ok: false; detail: string; advice: string };

export const pass = (detail: string): Verdict => ({ ok: true, detail });
export const fail = (detail: string, advice: string): Verdict => ({ ok: false, detail, advice });

export interface CheckSpec {
  id: string;
  title: string;
  /** Ids of checks that must have passed first. */
  needs?: readonly string[];
  /** The advice when the check runs out of time. */
  onTimeout?: string;
  run: (signal: AbortSignal) => Promise<Verdict>;
}

class TimedOut extends Error {}

export class Checkup {
  readonly #results: CheckResult[] = [];
  readonly #timeoutInMs: number;

  constructor(timeoutInMs: number) {
    this.#timeoutInMs = timeoutInMs;
  }

  get results(): readonly CheckResult[] {
    return this.#results;
  }

  passed(id: string): boolean {
    return this.#results.some((result) => result.id === id && result.ok && result.skipped !== true);
  }

  async check(spec: CheckSpec): Promise<CheckResult> {
    const missing = (spec.needs ?? []).filter((id) => !this.passed(id));
    if (missing.length > 0) {
      return this.#record(spec, { ok: false, detail: `not tried: ${missing.join(', ')} did not pass`, advice: `fix ${missing.join(', ')} first` }, true);
    }
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        controller.abort(new TimedOut());
        reject(new TimedOut());
      }, this.#timeoutInMs);
    });
    let verdict: Verdict;
    try {
      verdict = await Promise.race([spec.run(controller.signal), timedOut]);
    } catch (error) {
      verdict =
        error instanceof TimedOut || controller.signal.aborted
          ? fail(`no answer within ${this.#timeoutInMs} ms`, spec.onTimeout ?? 'a firewall or proxy may drop the traffic; raise --timeout-in-ms if the line is only slow')
          : fail(error instanceof Error ? error.message : String(error), 'see the detail');
    } finally {
      clearTimeout(timer);
    }
    return this.#record(spec, verdict, verdict.ok && verdict.skipped === true);
  }

  #record(spec: CheckSpec, verdict: Verdict, skipped: boolean): CheckResult {
    const result: CheckResult = {
      id: spec.id,
      title: spec.title,
      ok: verdict.ok,
      ...(skipped ? { skipped: true as const } : {}),
      detail: verdict.detail,
      ...(verdict.ok ? {} : { advice: verdict.advice }),
    };
    this.#results.push(result);
    return result;
  }

  report(target: DoctorReport['target']): DoctorReport {
    return { target, ok: this.#results.every((result) => result.ok), checks: [...this.#results] };
  }
}

/** The report as an aligned table: mark, check, what was found, what to do. */
export function renderTable(report: DoctorReport): string {
  const rows = report.checks.map((check) => [check.ok ? (check.skipped ? '–' : '✔') : '✗', check.title, check.detail, check.advice ?? '']);
  const header = ['', 'CHECK', 'FOUND', 'TO DO'];
  const widths = [1, 2].map((column) => Math.max(header[column]!.length, ...rows.map((row) => row[column]!.length)));
  const line = (row: string[]): string => `${row[0]!.padEnd(1)}  ${row[1]!.padEnd(widths[0]!)}  ${row[2]!.padEnd(widths[1]!)}  ${row[3]!}`.trimEnd();
  const failed = report.checks.filter((check) => !check.ok).length;
  const summary =
    failed === 0
      ? `all ${report.checks.length} checks passed`
      : `${failed} of ${report.checks.length} checks failed`;
  return `${[line(header), ...rows.map(line)].join('\n')}\n\n${report.target}: ${summary}\n`;
}
