#!/usr/bin/env node
/** The `lineage` executable. Each command registers itself here with one import and one list entry. */
import { registerInspect } from './inspect-command.js';
import { registerRegistryCommands } from './registry-commands.js';
import { runCli, type CommandRegistrar } from './run.js';
import { registerTree } from './tree-command.js';
import { registerVerify } from './verify-command.js';

const COMMANDS: readonly CommandRegistrar[] = [registerInspect, registerVerify, registerTree, registerRegistryCommands];

// `lineage ... | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

// exitCode (not exit()) lets pending output flush.
process.exitCode = await runCli(process.argv.slice(2), COMMANDS);
