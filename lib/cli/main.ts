#!/usr/bin/env node
// The `pia` command. Exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted.
import { parseArgs } from 'node:util';
import { PiaError } from '../errors.js';
import { doctorReport, formatDoctor } from './doctor.js';
import { version } from '../version.js';

const USAGE = `usage: pia <command> [options]

commands:
  doctor           what this machine can run (CPU features, CUDA status)

options:
  --json           machine-readable output
  -h, --help       this help
  -v, --version    print the version`;

class UsageError extends Error {}

function run(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    console.log(version);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  switch (command) {
    case 'doctor': {
      if (rest.length) throw new UsageError(`doctor takes no arguments (got ${rest.join(' ')})`);
      const report = doctorReport();
      console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

try {
  process.exitCode = run(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`pia: ${e.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else {
    const err = e as Error;
    console.error(`pia: ${err instanceof PiaError ? `${err.code}: ` : ''}${err.message}`);
    process.exitCode = 1;
  }
}
