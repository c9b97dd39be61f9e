// Progress for `pia animate`: a redrawn bar with ETA on a TTY, one plain line per step otherwise.
import type { ProgressInfo } from '../pipelines/pia.js';

export function progressReporter(stream: NodeJS.WriteStream, enabled: boolean): { update(p: ProgressInfo): void; done(): void } {
  const t0 = Date.now();
  let lastStepAt = t0;
  let stepsDone = 0;
  const tty = stream.isTTY === true;
  return {
    update(p: ProgressInfo) {
      if (!enabled) return;
      stepsDone++;
      const now = Date.now();
      const perStep = (now - t0) / stepsDone;
      const remaining = (p.total - p.step + (p.iterations - p.iteration - 1) * p.total) * perStep;
      const iter = p.iterations > 1 ? ` FreeInit ${p.iteration + 1}/${p.iterations}` : '';
      const stepSec = ((now - lastStepAt) / 1000).toFixed(2);
      lastStepAt = now;
      if (tty) {
        const width = 24;
        const filled = Math.round((p.step / p.total) * width);
        stream.write(
          `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${p.step}/${p.total}${iter} t=${p.timestep} ` +
            `${stepSec}s/step ETA ${(remaining / 1000).toFixed(0)}s   `,
        );
      } else {
        stream.write(`step ${p.step}/${p.total}${iter} t=${p.timestep} ${stepSec}s eta=${(remaining / 1000).toFixed(1)}s\n`);
      }
    },
    done() {
      if (enabled && tty) stream.write('\n');
    },
  };
}
