using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Tokenization;
using Alora.Tokenization.Templates;

namespace Alora.Training.Data;

/// <summary>
/// Reads JSONL training data into tokenized examples. Accepted line shapes:
/// <list type="bullet">
/// <item>{"messages": […]} — rendered with the model's chat template (no generation prompt), tokenized as
/// apply_chat_template does (no special tokens added beyond what the template writes);</item>
/// <item>{"messages": {"chat": […]}} — IBM's intrinsic data, same rendering (custom roles such as "certainty" included);</item>
/// <item>{"prompt", "completion"} and {"input", "output"} — prompt with the tokenizer's special tokens, then the
/// completion and EOS;</item>
/// <item>{"input_ids": […], "labels": […]} — pre-tokenized; −100 marks positions without loss (labels optional).</item>
/// </list>
/// For an aLoRA the invocation is located in each example (the last occurrence); the labels are the tokens
/// after it. Without an invocation, the labels are the completion: the last message's tokens, or the
/// completion/output tokens. Lines are numbered from 1 in every error.
/// </summary>
public static class TrainingDataLoader
{
    /// <param name="skipped">Receives one message per example dropped because the cutoff left it nothing to learn
    /// (as in Hugging Face training, where such a row has no labels).</param>
    public static IReadOnlyList<TrainingExample> Load(string path, Tokenizer tokenizer, ChatTemplateConfig? chat, TrainingDataOptions options, List<string>? skipped = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"training data not found: {path}", path);
        if (options.InvocationTokens is { Length: 0 })
            throw new TrainingDataException("the aLoRA invocation is empty: it tokenized to no ids");
        var examples = new List<TrainingExample>();
        int lineNumber = 0;
        foreach (string rawLine in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(rawLine)) continue;
            JsonObject line;
            if (Formats.Utf8Text.DescribeInvalid(rawLine) is { } bad) throw new TrainingDataException($"{path}:{lineNumber}: {bad}");
            try
            {
                line = JsonNode.Parse(rawLine, documentOptions: Formats.Utf8Text.StrictJson) as JsonObject
                    ?? throw new TrainingDataException($"{path}:{lineNumber}: expected a JSON object per line");
            }
            catch (JsonException e)
            {
                throw new TrainingDataException($"{path}:{lineNumber}: not valid JSON ({e.Message})");
            }
            var example = Tokenize(line, tokenizer, chat, options, $"{path}:{lineNumber}", lineNumber);
            if (example.Labels.AsSpan(1).IndexOfAnyExcept(TrainingExample.IgnoreIndex) < 0)
            {
                skipped?.Add($"{path}:{lineNumber}: nothing left to learn after the cutoff length {options.CutoffLength}; skipped");
                continue;
            }
            examples.Add(example);
        }
        if (examples.Count == 0)
            throw new TrainingDataException(lineNumber == 0 || skipped is null || skipped.Count == 0
                ? $"{path}: the data set is empty (no JSON lines)"
                : $"{path}: no example has anything left to learn within the cutoff length {options.CutoffLength}; raise CutoffLength");
        return examples;
    }

    private static TrainingExample Tokenize(JsonObject line, Tokenizer tokenizer, ChatTemplateConfig? chat, TrainingDataOptions options, string where, int lineNumber)
    {
        int[] ids;
        int[]? labels = null;
        string? text = null;  // the text that was tokenized, for boundary hints
        int responseStart;   // first position of the completion when there is no invocation
        if (line["input_ids"] is JsonNode idsNode)
        {
            ids = ReadIds(idsNode, where, "input_ids", tokenizer.VocabSize);
            if (line["labels"] is JsonNode labelsNode)
            {
                labels = ReadIds(labelsNode, where, "labels", tokenizer.VocabSize, allowIgnore: true);
                if (labels.Length != ids.Length)
                    throw new TrainingDataException($"{where}: \"labels\" has {labels.Length} entries, \"input_ids\" has {ids.Length}; they must be the same length");
            }
            responseStart = 0;
        }
        else if (line["messages"] is JsonNode messagesNode)
        {
            var messages = messagesNode switch
            {
                JsonArray a => a,
                JsonObject o when o["chat"] is JsonArray c => c,
                _ => throw new TrainingDataException($"{where}: \"messages\" must be a list of messages, or {{\"chat\": [...]}} (IBM's format)"),
            };
            if (messages.Count == 0) throw new TrainingDataException($"{where}: \"messages\" is empty");
            if (chat is null) throw new TrainingDataException($"{where}: chat data needs the model's chat template, and the model has none");
            var extra = new JsonObject();
            foreach (var key in new[] { "tools", "documents", "controls" })
                if (line[key] is JsonNode value) extra[key] = value.DeepClone();
            string rendered, prefix;
            try
            {
                rendered = chat.Apply((JsonArray)messages.DeepClone(), addGenerationPrompt: false, extra, options.TemplateNow);
                // Without an invocation, the completion is the last message: its content's tokens.
                prefix = chat.Apply(new JsonArray(messages.Take(messages.Count - 1).Select(m => m?.DeepClone()).ToArray()), addGenerationPrompt: true, extra, options.TemplateNow);
            }
            catch (TemplateException e)
            {
                // A message the template cannot render (no "content", a role it refuses) is this line's fault.
                throw new TrainingDataException($"{where}: the chat template cannot render these messages: {e.Message}");
            }
            ids = tokenizer.Encode(rendered, addSpecialTokens: false);
            text = rendered;
            responseStart = rendered.StartsWith(prefix, StringComparison.Ordinal)
                ? tokenizer.Encode(prefix, addSpecialTokens: false).Length
                : 0;
        }
        else if (TryPair(line, "prompt", "completion", where, out var prompt, out var completion)
              || TryPair(line, "input", "output", where, out prompt, out completion))
        {
            int[] promptIds = tokenizer.Encode(prompt, addSpecialTokens: true);
            int[] completionIds = tokenizer.Encode(completion, addSpecialTokens: false);
            ids = [.. promptIds, .. completionIds, .. tokenizer.EosTokenId is int eos ? new[] { eos } : []];
            text = prompt + completion;
            responseStart = promptIds.Length;
        }
        else
        {
            var keys = string.Join(", ", line.Select(p => p.Key));
            throw new TrainingDataException(
                $"{where}: unrecognized example with keys [{keys}]; expected \"messages\", \"prompt\"+\"completion\", \"input\"+\"output\", or \"input_ids\" (+\"labels\")");
        }

        int? activationStart = null;
        if (options.InvocationTokens is { } invocation)
        {
            int s = Inference.AdapterActivation.LastOccurrence(ids, invocation);
            if (s < 0)
            {
                string hint = text is null ? "" : " " + string.Join(" ", InvocationTokens.CheckInConversation(tokenizer, invocation, text));
                throw new TrainingDataException(
                    $"{where}: the invocation [{string.Join(", ", invocation)}] does not occur in this example's {ids.Length} tokens.{hint}");
            }
            activationStart = Inference.AdapterActivation.Start(ids, invocation, options.ActivationShift);   // the one rule, with the adapter's shift
            responseStart = s + invocation.Length;
        }

        if (labels is null)
        {
            labels = (int[])ids.Clone();
            if (!options.TrainOnAllTokens)
                for (int i = 0; i < Math.Min(responseStart, labels.Length); i++) labels[i] = TrainingExample.IgnoreIndex;
        }
        if (ids.Length > options.CutoffLength)
        {
            ids = ids[..options.CutoffLength];
            labels = labels[..options.CutoffLength];
            if (activationStart >= options.CutoffLength)
                throw new TrainingDataException($"{where}: the invocation starts at token {activationStart}, past the cutoff length {options.CutoffLength}; raise CutoffLength");
        }
        // Labels at position 0 never count (nothing predicts them); the caller drops an example with none after it.
        return new TrainingExample(ids, labels, activationStart, lineNumber);
    }

    private static bool TryPair(JsonObject line, string first, string second, string where, out string a, out string b)
    {
        a = b = "";
        if (line[first] is null && line[second] is null) return false;
        a = line[first] is JsonValue v1 && v1.TryGetValue(out string? s1) ? s1 : throw new TrainingDataException($"{where}: \"{first}\" must be a string (it comes with \"{second}\")");
        b = line[second] is JsonValue v2 && v2.TryGetValue(out string? s2) ? s2 : throw new TrainingDataException($"{where}: \"{second}\" must be a string (it comes with \"{first}\")");
        return true;
    }

    private static int[] ReadIds(JsonNode node, string where, string field, int vocabSize, bool allowIgnore = false)
    {
        if (node is not JsonArray array) throw new TrainingDataException($"{where}: \"{field}\" must be a list of token ids");
        var ids = new int[array.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            if (array[i] is not JsonValue v || !v.TryGetValue(out int id))
                throw new TrainingDataException($"{where}: \"{field}\"[{i}] is not an integer");
            if (!(allowIgnore && id == TrainingExample.IgnoreIndex) && (uint)id >= (uint)vocabSize)
                throw new TrainingDataException($"{where}: \"{field}\"[{i}] = {id} is outside the vocabulary [0, {vocabSize})");
            ids[i] = id;
        }
        if (ids.Length == 0) throw new TrainingDataException($"{where}: \"{field}\" is empty");
        return ids;
    }
}
