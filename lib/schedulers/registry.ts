/** Scheduler classes by diffusers class name, for configs that name their class (`_class_name`). */
import { PiaError } from '../errors.js';
import { DDIMScheduler } from './scheduling_ddim.js';
import { DPMSolverMultistepScheduler } from './scheduling_dpmsolver_multistep.js';
import { EulerAncestralDiscreteScheduler } from './scheduling_euler_ancestral_discrete.js';
import { EulerDiscreteScheduler } from './scheduling_euler_discrete.js';
import { LCMScheduler } from './scheduling_lcm.js';
import { LMSDiscreteScheduler } from './scheduling_lms_discrete.js';
import { PNDMScheduler } from './scheduling_pndm.js';
import type { ConfigDict, SchedulerBase } from './scheduling_utils.js';

export const schedulerClasses = {
  DDIMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  LCMScheduler,
} as const;

export type SchedulerClassName = keyof typeof schedulerClasses;

/**
 * Builds the scheduler a scheduler_config.json describes: `className`, else the config's `_class_name`.
 * An unknown class is E_UNSUPPORTED (naming the option `_class_name`).
 */
export function schedulerFromConfig(config: ConfigDict, className?: string, overrides: ConfigDict = {}): SchedulerBase {
  const name = className ?? (typeof config._class_name === 'string' ? config._class_name : undefined);
  if (name === undefined || !Object.prototype.hasOwnProperty.call(schedulerClasses, name)) {
    throw new PiaError(
      'E_UNSUPPORTED',
      `scheduler class ${JSON.stringify(name ?? null)} is not supported (supported: ${Object.keys(schedulerClasses).join(', ')})`,
      { option: '_class_name' },
    );
  }
  return schedulerClasses[name as SchedulerClassName].fromConfig(config, overrides);
}
