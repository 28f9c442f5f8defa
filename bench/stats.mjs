// Small statistics over samples, nearest-rank, as the tables report them.

/** @param {number[]} samples @param {number} q from 0 to 1 */
export function quantile(samples, q) {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** @param {number[]} samples */
export const median = (samples) => quantile(samples, 0.5);

/** @param {number[]} samples */
export const p95 = (samples) => quantile(samples, 0.95);

/** @param {number[]} values */
export const min = (values) => Math.min(...values);

/** @param {number[]} values */
export const max = (values) => Math.max(...values);
