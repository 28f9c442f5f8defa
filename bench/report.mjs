// Turns a results file into what people read: the table on the terminal,
// the Benchmarks section of the README and the chart of ratios. Run it
// directly to regenerate the README section and the chart from a results
// file without measuring again:
//
//   node bench/report.mjs [bench/results/latest.json]
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { format } from './workloads.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
export const README = join(root, 'README.md');
export const CHART = join(here, 'ratios.svg');
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/** What the numbers were measured on. */
export function describeMachine() {
  const run = (command, args) => {
    try {
      return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
  };
  let cpuModel = cpus()[0]?.model;
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() it is.
  }
  return {
    nproc: Number(run('nproc', [])) || cpus().length,
    cpuModel: cpuModel?.trim(),
    kernel: release(),
    node: process.version,
    libremctl: run('pkg-config', ['--modversion', 'libremctl']) ?? run('dpkg-query', ['-W', '-f=${Version}', 'libremctl1']),
    remctld: run('dpkg-query', ['-W', '-f=${Version}', 'remctl-server']),
  };
}

/** The load average around the run: other work on the machine makes every figure noisier. */
function describeLoad(load) {
  if (load === undefined) return '';
  const peak = load.peak ?? Math.max(load.start, load.end);
  const busy = peak > 1 ? ' Other work was running on the machine meanwhile, so single rounds are noisy: compare the ranges.' : '';
  return `The 1-minute load average was ${load.start.toFixed(2)} at the start and peaked at ${peak.toFixed(2)}.${busy}`;
}

const ratioText = (row) => {
  if (row.ratio === undefined) return '—';
  const suffix = row.ratioOf === 'idle' ? '× idle' : '×';
  const range = row.ratioRange ? ` (${row.ratioRange[0].toFixed(2)}–${row.ratioRange[1].toFixed(2)})` : '';
  return `${row.ratio.toFixed(2)}${suffix}${range}`;
};

const verdict = (row) => (row.target === undefined ? '' : row.pass ? 'met' : 'MISSED');

/** The table for the terminal. */
export function terminalTable(results) {
  const header = ['server', 'workload', 'measure', 'C', 'Node', 'ratio (rounds)', 'target', ''];
  const lines = results.rows.map((row) => [
    row.server,
    row.workload.replaceAll('`', ''),
    row.measure.replaceAll('`', ''),
    row.cText ?? format(row.c, row.unit),
    format(row.node, row.unit),
    ratioText(row),
    row.target?.text ?? '',
    verdict(row),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i].length)));
  const workloadWidth = Math.min(widths[1], 48);
  widths[1] = workloadWidth;
  const pad = (line) => line.map((cell, i) => (i === 1 && cell.length > workloadWidth ? `${cell.slice(0, workloadWidth - 1)}…` : cell).padEnd(widths[i])).join('  ').trimEnd();
  return [pad(header), pad(widths.map((w) => '-'.repeat(w))), ...lines.map(pad)].join('\n');
}

/** The text between the bench markers of the README. */
export function readmeSection(results, chartPath) {
  const { machine, plan, startedAt, servers } = results;
  const date = startedAt.slice(0, 10);
  const lines = [];
  lines.push(
    `Measured by \`npm run bench\` on ${date}, on this repository's development machine: ${machine.nproc} CPUs (\`nproc\`), ` +
      `${machine.cpuModel}, Linux ${machine.kernel}, Node ${machine.node}, libremctl ${machine.libremctl}, remctld ${machine.remctld}. ` +
      `Client and servers share the machine, on loopback. ${describeLoad(results.loadAverage)}`,
    '',
    `Every workload runs once per round, ${plan.roundsRun ?? plan.rounds} rounds${plan.onceOnly?.length ? ` (${plan.onceOnly.join(', ')}: the first only)` : ''}, for our library and for a C client of ours that calls ` +
      `libremctl directly ([\`bench/c/reference.c\`](bench/c/reference.c)): the physical limit, which a binding can only ` +
      `add to. Which of the two goes first alternates between rounds, and each run is a process of its own. The ratio is ` +
      `ours over C's, with the lowest and highest single round in brackets; the targets are ratios to C in the same run.`,
    '',
    `Two servers, both the realm's remctld: **stock**, as Debian ships it (Nagle on, listen backlog ${servers.stock.backlog ?? 5}), ` +
      `and **tuned**, the same binary with TCP_NODELAY on its accepted sockets and a listen backlog of ${servers.tuned.backlog ?? 'more'} ` +
      `through an \`LD_PRELOAD\` shim ([\`bench/c/tuned-remctld.c\`](bench/c/tuned-remctld.c)).`,
    '',
    `![Ratios of our figures to libremctl's from C, against their targets](${chartPath})`,
    '',
    '| server | workload | measure | libremctl (C) | remctl (Node) | ratio | target | |',
    '|---|---|---|--:|--:|--:|---|---|',
  );
  for (const row of results.rows) {
    const cells = [
      row.server,
      row.workload,
      row.measure,
      row.cText ?? format(row.c, row.unit),
      format(row.node, row.unit),
      ratioText(row),
      row.target?.text ?? '',
      row.target === undefined ? '' : row.pass ? 'met' : '**missed**',
    ];
    lines.push(`| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`);
  }
  const notes = results.rows.filter((row) => row.notes).flatMap((row) => row.notes.map((note) => `${row.server}, ${row.workload.replaceAll('`', '')}: ${note}`));
  lines.push(
    '',
    'How to read it:',
    '',
    '- Latencies pool every round\'s samples, after a few unmeasured warm-up calls. Client CPU is user plus system time of the ' +
      'whole client process (`process.cpuUsage()`, `getrusage()`): for us that includes every thread of ours (those that open ' +
      'connections and run noops).',
    '- C\'s counterparts: `remctl_commandv` and `remctl_output` on one connection for the session; libremctl\'s `remctl()` ' +
      'for one-shot calls, buffered bulk (it collects the output in memory) and the fanout, one POSIX thread per call; a ' +
      '`remctl_output` loop for streamed bulk; for the scale rows, 1 000 connections opened one after another, then ' +
      '`remctl_noop` on each from a thread of its own, all released at once.',
    '- The scale rows count, once the connections are open and idle: the threads of ours alive (those waiting idle for ' +
      'the next open included), and the growth of resident memory and of open descriptors, each divided by the ' +
      'connections.',
    `- Throughput is the output's size over the whole call, connecting included, the median round. Peak RSS growth is the ` +
      'high-water mark of the resident set above the resident set at the start of the workload (Linux: `VmHWM` after ' +
      'writing 5 to `/proc/self/clear_refs`), in a fresh process, the worst round.',
    '- noop is `remctl_noop` round trips: the protocol with nothing forked on the server, so the closest measure of ' +
      'what the binding itself adds to each exchange.',
    '- The event loop rows compare the 256-way fanout with the same process idle just before: ' +
      '`monitorEventLoopDelay` at 1 ms resolution, p99 less the 1 ms interval (how late the loop was), and the p99 of ' +
      '`fs.promises.readFile` of a 1 KiB file read over and over meanwhile.',
  );
  if (notes.length) lines.push('', 'Notes from the run:', '', ...notes.map((note) => `- ${note}`));
  lines.push('', `Raw figures: \`bench/results/\` after a run (not committed). \`npm run bench -- --smoke\` is a 30-second check that everything runs.`);
  return lines.join('\n');
}

/** Replaces the README's Benchmarks section. */
export function writeReadme(results, readmePath = README, chartPath = CHART) {
  const text = readFileSync(readmePath, 'utf8');
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${readmePath} has no ${START} ... ${END} section`);
  const link = relative(dirname(readmePath), chartPath).split('\\').join('/');
  const updated = `${text.slice(0, start + START.length)}\n${readmeSection(results, link)}\n${text.slice(end)}`;
  writeFileSync(readmePath, updated);
}

const escapeXml = (text) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

/**
 * The chart: one bar per ratio that has a target, on a log scale from C
 * (1×), the target marked across the bar's row and written on the right.
 * Drawn here, as plain SVG.
 */
export function chartSvg(results) {
  const bars = results.rows.filter((row) => row.target && (row.target.kind === 'ratio-max' || row.target.kind === 'ratio-min'));
  const width = 900;
  const labelWidth = 330;
  const plotLeft = labelWidth + 16;
  const plotRight = width - 100;
  const top = 84;
  const rowHeight = 30;
  const plotBottom = top + bars.length * rowHeight;
  const height = plotBottom + 60;
  const values = bars.flatMap((row) => [row.ratio ?? 1, row.target.limit, ...(row.ratioRange ?? [])]);
  const low = Math.min(0.5, ...values.map((v) => v / 1.25));
  const high = Math.max(2, ...values.map((v) => v * 1.5));
  const x = (ratio) => plotLeft + ((Math.log(ratio) - Math.log(low)) / (Math.log(high) - Math.log(low))) * (plotRight - plotLeft);
  const ticks = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16].filter((t) => t >= low && t <= high);
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="600">remctl (Node) ÷ libremctl from C, same run (${results.startedAt.slice(0, 10)}, ${results.machine.nproc} CPUs)</text>`,
    `<text x="16" y="44" fill="#555">Bars: the ratio, log scale from C at 1×; green met its target, red missed it. Whiskers: lowest and highest round. Black marks: targets.</text>`,
    `<text x="16" y="60" fill="#555">Latency and CPU: lower is better. MB/s: higher is better.</text>`,
    `<text x="${plotRight + 16}" y="${top - 8}" fill="#555" font-size="12">target</text>`,
  );
  for (const tick of ticks) {
    out.push(
      `<line x1="${x(tick).toFixed(1)}" y1="${top - 4}" x2="${x(tick).toFixed(1)}" y2="${plotBottom}" stroke="${tick === 1 ? '#333' : '#e2e2e2'}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`,
      `<text x="${x(tick).toFixed(1)}" y="${plotBottom + 18}" text-anchor="middle" fill="#555">${tick}×</text>`,
    );
  }
  out.push(`<text x="${x(1).toFixed(1)}" y="${plotBottom + 34}" text-anchor="middle" fill="#333" font-size="12">C</text>`);
  bars.forEach((row, i) => {
    const y = top + i * rowHeight;
    const middle = y + rowHeight / 2 + 4;
    const label = `${row.server}: ${row.name ?? row.workload.split(':')[0]}, ${shortMeasure(row)}`;
    if (i % 2 === 1) out.push(`<rect x="8" y="${y}" width="${width - 16}" height="${rowHeight}" fill="#f6f6f6"/>`);
    out.push(`<text x="${labelWidth}" y="${middle}" text-anchor="end">${escapeXml(label)}</text>`);
    const ratio = row.ratio;
    const colour = row.pass ? '#2e9e4f' : '#d0413b';
    if (ratio !== undefined) {
      const from = x(Math.min(1, ratio));
      const to = x(Math.max(1, ratio));
      out.push(`<rect x="${from.toFixed(1)}" y="${y + 8}" width="${Math.max(1.5, to - from).toFixed(1)}" height="${rowHeight - 16}" fill="${colour}" rx="2"><title>${escapeXml(`${ratio.toFixed(3)}× (target ${row.target.text})`)}</title></rect>`);
      if (row.ratioRange) {
        // The lowest and highest single round, as a whisker across the bar.
        const [a, b] = row.ratioRange.map((v) => x(Math.min(high, Math.max(low, v))).toFixed(1));
        const cy = (y + rowHeight / 2).toFixed(1);
        out.push(
          `<path d="M${a} ${cy} H${b} M${a} ${y + 11} V${y + rowHeight - 11} M${b} ${y + 11} V${y + rowHeight - 11}" stroke="#222" stroke-width="1.2" fill="none" opacity="0.7"/>`,
        );
      }
      // Beyond the bar's far end (and its whisker), or right of the C line for a bar that goes left.
      const valueX = ratio >= 1 ? Math.max(to, row.ratioRange ? x(Math.min(high, row.ratioRange[1])) : to) + 6 : Math.max(x(1), row.ratioRange ? x(Math.min(high, row.ratioRange[1])) : x(1)) + 6;
      out.push(`<text x="${valueX.toFixed(1)}" y="${middle}" fill="${colour}" font-weight="600">${ratio.toFixed(2)}×</text>`);
    }
    const tx = x(row.target.limit);
    out.push(
      `<line x1="${tx.toFixed(1)}" y1="${y + 3}" x2="${tx.toFixed(1)}" y2="${y + rowHeight - 3}" stroke="#000" stroke-width="2.5"/>`,
      `<text x="${plotRight + 16}" y="${middle}" fill="#000">${escapeXml(row.target.text.replace(' C', ''))}</text>`,
    );
  });
  out.push(`<text x="16" y="${height - 10}" fill="#555" font-size="12">${escapeXml(`${results.machine.cpuModel}, Linux ${results.machine.kernel}, Node ${results.machine.node}, libremctl ${results.machine.libremctl}. Made by npm run bench (bench/report.mjs).`)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function shortMeasure(row) {
  if (row.unit === 'MB/s') return 'MB/s';
  if (row.measure.startsWith('client CPU')) return 'CPU';
  return row.measure.replace('latency, ', 'latency ');
}

export function writeChart(results, chartPath = CHART) {
  writeFileSync(chartPath, chartSvg(results));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2] ?? join(here, 'results', 'latest.json');
  const results = JSON.parse(readFileSync(file, 'utf8'));
  console.log(terminalTable(results));
  writeChart(results);
  writeReadme(results);
  console.log(`\nwrote ${relative(root, CHART)} and the Benchmarks section of README.md from ${relative(root, file)}`);
}
