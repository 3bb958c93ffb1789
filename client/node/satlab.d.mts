// ES module types of satlab-client (satlab.mjs): the same API as satlab.d.ts,
// plus the default export (the whole CommonJS module object).
export * from './satlab.js';
import * as satlab from './satlab.js';
export default satlab;
