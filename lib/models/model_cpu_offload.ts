// diffusers' enable_model_cpu_offload: of a pipeline's networks only the one running keeps its
// weights on the GPU; the others wait in host memory and move back when their turn comes. Moving
// costs one copy of the network's weights each way, so a job pays it a few times (text encoder,
// UNet, VAE), never per step. Calls through one group run one at a time, so no network is moved
// while a call of it is still running.
import type { ResolvedPlacement } from '../loaders/device_options.js';

/** A network whose weights can leave the GPU (the native model classes). */
export interface OffloadableModel {
  readonly placement: ResolvedPlacement;
  /** Weights to the GPU (true) or to host memory (false). */
  setResident(onDevice: boolean): Promise<void>;
}

export class ModelCpuOffload {
  readonly #models: OffloadableModel[];
  // Until the first call every network is taken to be on the GPU, as it was loaded.
  readonly #resident: Set<OffloadableModel>;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(models: OffloadableModel[]) {
    this.#models = models.filter((m) => m.placement.device !== 'cpu');
    this.#resident = new Set(this.#models);
  }

  /** Whether `model` is one of the networks this group moves. */
  has(model: OffloadableModel): boolean {
    return this.#models.includes(model);
  }

  /** Runs `call` with `model` alone on the GPU. */
  run<T>(model: OffloadableModel, call: () => Promise<T>): Promise<T> {
    if (!this.has(model)) return call();
    const next = this.#queue.then(async () => {
      await this.#activate(model);
      return call();
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Puts every network back on the GPU (offload disabled). */
  async restore(): Promise<void> {
    await this.#queue;
    for (const m of this.#models) {
      if (!this.#resident.has(m)) {
        await m.setResident(true);
        this.#resident.add(m);
      }
    }
  }

  async #activate(model: OffloadableModel): Promise<void> {
    for (const m of [...this.#resident]) {
      if (m === model) continue;
      await m.setResident(false);
      this.#resident.delete(m);
    }
    if (!this.#resident.has(model)) {
      await model.setResident(true);
      this.#resident.add(model);
    }
  }
}
