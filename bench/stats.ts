/** The statistics every benchmark reports, computed one way. */

/** The value below which `p` per cent of the samples fall (nearest rank); the samples need not be sorted. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new RangeError('percentile of no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export const median = (samples: readonly number[]): number => percentile(samples, 50);

export const mean = (samples: readonly number[]): number => samples.reduce((sum, value) => sum + value, 0) / samples.length;

/** What a timed run of calls reports, from each successful call's latency (ms) and the run's wall time (ms). */
export function callFigures(latencies: readonly number[], elapsedMs: number): { p50Ms: number; p99Ms: number; perSecond: number; count: number } {
  return { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), perSecond: (latencies.length / elapsedMs) * 1000, count: latencies.length };
}
