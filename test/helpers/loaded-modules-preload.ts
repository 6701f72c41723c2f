// A preload (`node --import <this>`) that writes, at exit, every module file the process loaded
// (ES modules and CommonJS alike) to the file named by HIVEMIND_LOADED_MODULES_OUT, one URL a
// line. The CLI startup test uses it to see what a command pulls in before it does anything.
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';

const out = process.env.HIVEMIND_LOADED_MODULES_OUT;
if (out) {
  const loaded = new Set<string>();
  registerHooks({
    load(url, context, nextLoad) {
      loaded.add(url);
      return nextLoad(url, context);
    },
  });
  process.on('exit', () => writeFileSync(out, [...loaded].join('\n') + '\n'));
}
