/**
 * Progress output for long operations. On a terminal: one line redrawn in place. Otherwise
 * (CI logs, pipes): a line at most every 10% so logs stay readable.
 */
export interface ProgressLine {
  update(text: string, fraction?: number): void;
  done(text: string): void;
}

export function createProgressLine(stream: NodeJS.WriteStream = process.stderr): ProgressLine {
  const tty = stream.isTTY === true;
  let lastDecile = -1;
  let lastText = "";
  return {
    update(text, fraction) {
      if (tty) {
        stream.write(`\r\x1b[2K${text}`);
        return;
      }
      const decile = fraction === undefined ? -1 : Math.floor(fraction * 10);
      if ((fraction !== undefined && decile !== lastDecile) || (fraction === undefined && text !== lastText)) {
        stream.write(`${text}\n`);
        lastDecile = decile;
        lastText = text;
      }
    },
    done(text) {
      stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
    },
  };
}

/**
 * Progress of a model build's phases (GET /v1/model-builds/{id}). On a terminal: one line
 * redrawn in place. Otherwise: a line when a phase starts and at each 10% step within it.
 * Fed every phase record of each poll, so phases that began and ended between two polls
 * still get their line.
 */
export interface PhaseProgress {
  show(phases: { name: string; progress: { done: number; total: number } | null }[]): void;
  done(text: string): void;
}

export function createPhaseProgress(stream: NodeJS.WriteStream = process.stderr): PhaseProgress {
  const tty = stream.isTTY === true;
  const shown = new Map<string, number>(); // phase -> last decile printed (-1: no count)
  let lastText = "";
  return {
    show(phases) {
      for (const p of phases) {
        const fraction = p.progress && p.progress.total > 0 ? p.progress.done / p.progress.total : null;
        const text = p.progress
          ? `${p.name} ${bar(fraction ?? 1)} ${p.progress.done}/${p.progress.total}`
          : `${p.name}…`;
        const decile = fraction === null ? -1 : Math.floor(fraction * 10);
        if (tty) {
          if (text !== lastText) stream.write(`\r\x1b[2K${text}`);
        } else if (shown.get(p.name) !== decile) {
          stream.write(`${text}\n`);
        }
        shown.set(p.name, decile);
        lastText = text;
      }
    },
    done(text) {
      stream.write(tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
    },
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%`;
}
