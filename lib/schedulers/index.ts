export { DDIMScheduler, type DDIMStepOptions } from './scheduling_ddim.js';
export { PNDMScheduler } from './scheduling_pndm.js';
export { LMSDiscreteScheduler, type LMSStepOptions } from './scheduling_lms_discrete.js';
export { EulerDiscreteScheduler, type EulerStepOptions } from './scheduling_euler_discrete.js';
export { EulerAncestralDiscreteScheduler } from './scheduling_euler_ancestral_discrete.js';
export { DPMSolverMultistepScheduler } from './scheduling_dpmsolver_multistep.js';
export { LCMScheduler, type LCMSetTimestepsOptions } from './scheduling_lcm.js';
export {
  SchedulerBase,
  type ConfigDict,
  type PredictionType,
  type RandnGenerator,
  type SchedulerClass,
  type Scheduler,
  type StepOptions,
  type StepOutput,
  type TimestepSpacing,
} from './scheduling_utils.js';
export { schedulerClasses, schedulerFromConfig, type SchedulerClassName } from './registry.js';
