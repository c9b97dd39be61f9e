// A command line the CLI cannot run (exit code 2, usage printed), as opposed to a failure while running it.
export class UsageError extends Error {}
