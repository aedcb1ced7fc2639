// Order statistics for the benchmark's latency samples.
// Nearest-rank percentiles: every reported figure is a latency that was really observed,
// which keeps p99 of 100 samples honest (the 99th slowest run, not an interpolation).

/** The nearest-rank percentile p (0 < p ≤ 100) of the samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new Error("percentile of no samples");
  if (!(p > 0 && p <= 100)) throw new Error(`percentile ${p} is outside (0, 100]`);
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[rank - 1] as number;
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

export interface LatencySummary {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

export function summarize(samples: readonly number[]): LatencySummary {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: percentile(samples, 100), count: samples.length };
}
