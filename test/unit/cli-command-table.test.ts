// main.ts loads only the command module the command word names (command-table.ts): the table must
// name every top-level command its modules register, or that command would only work through the
// slow load-everything fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { COMMAND_MODULES, commandWord, modulesFor, type RegisterDeps } from '../../src/cli/command-table.js';

const deps: RegisterDeps = {
  ctx: () => {
    throw new Error('registration must not create the context');
  },
  setExit: () => {},
};

test('each COMMAND_MODULES entry names exactly the top-level commands its module registers', async () => {
  for (const m of COMMAND_MODULES) {
    const program = new Command();
    await m.register(program, deps);
    const registered = program.commands.map((c) => c.name()).sort();
    assert.deepEqual(registered, [...m.names].sort(), `entry ${m.names.join(',')}`);
  }
  const all = COMMAND_MODULES.flatMap((m) => m.names);
  assert.equal(new Set(all).size, all.length, 'a command word is named by two entries');
});

test('the command word skips global options and their values', () => {
  assert.equal(commandWord(['tasks', '--json']), 'tasks');
  assert.equal(commandWord(['-c', 'tasks', 'get', 'x']), 'get');
  assert.equal(commandWord(['--config', 'f.json', 'logs', 'x']), 'logs');
  assert.equal(commandWord(['--config=f.json', 'logs']), 'logs');
  assert.equal(commandWord(['--help']), undefined);
  assert.equal(commandWord([]), undefined);
});

test('a command loads its own module; --version none; help and unknown words all', () => {
  const names = (args: string[]) => modulesFor(args).flatMap((m) => m.names);
  assert.ok(names(['tasks']).includes('tasks'));
  assert.ok(!names(['tasks']).includes('master'));
  assert.ok(names(['worker', 'start']).includes('worker') && !names(['worker', 'start']).includes('tasks'));
  assert.deepEqual(names(['--version']), []);
  assert.deepEqual(names(['-V']), []);
  assert.equal(modulesFor([]).length, COMMAND_MODULES.length);
  assert.equal(modulesFor(['--help']).length, COMMAND_MODULES.length);
  assert.equal(modulesFor(['help', 'tasks']).length, COMMAND_MODULES.length);
  assert.equal(modulesFor(['nosuch']).length, COMMAND_MODULES.length);
});
