// Imported FIRST by server.mjs: stdout is reserved for the single ready line, so every console method
// (libsignal prints "Opening session"/"Closing session" dumps with console.info) goes to stderr,
// and is dropped entirely unless PONTE_SIM_LOG=debug.
import { format } from 'node:util';

const verbose = (process.env.PONTE_SIM_LOG || '').toLowerCase() === 'debug';
const toStderr = (...args) => {
	process.stderr.write(format(...args) + '\n');
};
const drop = () => {};
console.log = verbose ? toStderr : drop;
console.info = verbose ? toStderr : drop;
console.debug = verbose ? toStderr : drop;
console.warn = verbose ? toStderr : drop;
console.error = toStderr;
