// Encode throughput of transformers.js on a JSONL corpus, measured the same way as Alora's bench:
// every record's text fields joined by "\n" is one document; one warm-up pass, then the best of N passes.
// Usage: node encode-bench.mjs <tokenizer folder> <corpus.jsonl> <field,field,...> [passes]
// Prints one JSON line: {"peer": "transformers.js", "bytes": ..., "tokens": ..., "best_seconds": ..., "mb_per_s": ...}
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';

const [folder, corpusPath, fieldList, passesArg] = process.argv.slice(2);
if (!folder || !corpusPath || !fieldList) {
  console.error('usage: node encode-bench.mjs <tokenizer folder> <corpus.jsonl> <field,field,...> [passes]');
  process.exit(2);
}
const passes = Number(passesArg ?? 3);
const fields = fieldList.split(',');

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(path.resolve(folder)) + '/';
const tokenizer = await AutoTokenizer.from_pretrained(path.basename(path.resolve(folder)));

const documents = readFileSync(corpusPath, 'utf8').split('\n').filter(line => line.length > 0)
  .map(line => { const record = JSON.parse(line); return fields.map(f => record[f] ?? '').join('\n'); });
const bytes = documents.reduce((sum, d) => sum + Buffer.byteLength(d, 'utf8'), 0);

function pass() {
  let tokens = 0;
  const start = process.hrtime.bigint();
  for (const document of documents) tokens += tokenizer.encode(document).length;
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, tokens };
}

pass(); // warm-up: JIT and the BPE cache, as Alora's warm-up pass
let best = Infinity, tokens = 0;
for (let i = 0; i < passes; i++) { const r = pass(); tokens = r.tokens; best = Math.min(best, r.seconds); }
console.log(JSON.stringify({ peer: 'transformers.js', bytes, tokens, best_seconds: best, mb_per_s: bytes / 1e6 / best }));
