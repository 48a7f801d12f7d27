// Differential reference: what transformers.js gives for each {"text": …} line of a JSONL corpus, as one
// {"ids", "ids_no_special", "decoded", "decoded_skip_special"} line each, to compare with `alora tokenize`
// and `alora detokenize` (docs/tokenizers.md lists the known, intended differences).
// Usage (after ./run.sh has installed node_modules): node reference.mjs <tokenizer folder> <corpus.jsonl>
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
const [folder, corpus] = process.argv.slice(2);
env.allowRemoteModels = false; env.allowLocalModels = true;
env.localModelPath = path.dirname(path.resolve(folder)) + '/';
const tok = await AutoTokenizer.from_pretrained(path.basename(path.resolve(folder)));
for (const line of readFileSync(corpus, 'utf8').split('\n')) {
  if (!line) continue;
  const text = JSON.parse(line).text;
  const ids = tok.encode(text);
  const ids_no_special = tok.encode(text, { add_special_tokens: false });
  console.log(JSON.stringify({ ids, ids_no_special, decoded: ids.length ? tok.decode(ids) : '', decoded_skip_special: ids.length ? tok.decode(ids, { skip_special_tokens: true }) : '' }));
}
