using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Structured;
using Alora.Tokenization;
using Json.Schema;
using Xunit;

namespace Alora.Tests.Structured;

/// <summary>
/// Generation under constraints, driven by random logits (any token the mask lets through can come), checked by an
/// independent JSON Schema validator (JsonSchema.Net).
/// </summary>
public class ConstrainedGenerationTests
{
    /// <summary>Runs <see cref="GenerationState"/> with logits from <paramref name="logitsAt"/>; returns the text and how it ended.</summary>
    internal static (string Text, FinishReason Finish, int[] Ids) Run(Tokenizer tokenizer, OutputConstraint constraint, Func<int, float[]> logitsAt,
        SamplingOptions? sampling = null, int maxTokens = 400, int[]? prompt = null)
    {
        var request = new GenerationRequest { PromptIds = prompt ?? [tokenizer.BosTokenId ?? 0], MaxTokens = maxTokens, Constraint = constraint, Sampling = sampling ?? SamplingOptions.Greedy };
        var matcher = TokenConstraint.Compile(constraint, TokenVocabulary.For(tokenizer)).Start();
        int[] eos = tokenizer.EosTokenId is int e ? [e] : [];
        var state = new GenerationState(request, tokenizer.VocabSize, eos, tokenizer.CreateStreamingDecoder(skipSpecialTokens: true), matcher);
        var text = new StringBuilder();
        var ids = new List<int>();
        while (!state.Finished)
        {
            var update = state.Advance(logitsAt(state.Generated));
            if (update is not null) { text.Append(update.Text); ids.Add(update.TokenId); }
        }
        text.Append(state.Final(0, 0, 0).Text);
        return (text.ToString(), state.Finish!.Value, [.. ids]);
    }

    /// <summary>Random logits that favour closing characters and end-of-sequence a little, so outputs finish.</summary>
    internal static Func<int, float[]> RandomLogits(Tokenizer tokenizer, int seed)
    {
        var random = new Random(seed);
        var bytes = tokenizer.TokenBytes();
        var bonus = new float[tokenizer.VocabSize];   // [V] the push towards closing characters
        for (int id = 0; id < bonus.Length; id++)
            if (bytes[id] is { } b && b.Any(c => c is (byte)'"' or (byte)']' or (byte)'}' or (byte)',')) bonus[id] = 2.5f;
        var logits = new float[tokenizer.VocabSize];
        return _ =>
        {
            for (int id = 0; id < logits.Length; id++) logits[id] = (float)(random.NextDouble() * 4) + bonus[id];
            if (tokenizer.EosTokenId is int eos) logits[eos] += 6;
            return logits;
        };
    }

    [Theory]
    [InlineData("stories260K", 0, 60)]
    [InlineData("granite3", 1000, 12)]
    public void Random_schemas_give_outputs_that_validate(string tokenizerName, int firstSeed, int schemas)
    {
        var tokenizer = TokenMaskTests.Load(tokenizerName);
        int finished = 0;
        for (int seed = firstSeed; seed < firstSeed + schemas; seed++)
        {
            var schema = new RandomSchema(seed).Root();
            var validator = JsonSchema.FromText(schema.ToJsonString());
            for (int sample = 0; sample < 2; sample++)
            {
                var (text, finish, _) = Run(tokenizer, OutputConstraint.JsonSchema(schema), RandomLogits(tokenizer, seed * 7 + sample),
                    new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = (ulong)(seed + 1) });
                if (finish != FinishReason.Stop) continue;   // ran out of tokens: a prefix, not a document
                finished++;
                JsonElement value;
                try { value = JsonDocument.Parse(text).RootElement; }
                catch (JsonException e) { throw new Xunit.Sdk.XunitException($"schema {schema.ToJsonString()} gave unparsable {text}: {e.Message}"); }
                var result = validator.Evaluate(value);
                Assert.True(result.IsValid, $"schema {schema.ToJsonString()} gave invalid {text}");
            }
        }
        Assert.True(finished >= schemas, $"only {finished} of {schemas * 2} outputs finished");
    }

    [Fact]
    public void Granite_common_style_intrinsic_schemas_validate()
    {
        var tokenizer = TokenMaskTests.Load("granite3");
        string[] schemas =
        [
            // Certainty/uncertainty: a score 0-9 or a probability.
            """{"type":"object","properties":{"certainty":{"type":"integer","minimum":0,"maximum":9}},"required":["certainty"],"additionalProperties":false}""",
            // Answerability.
            """{"type":"object","properties":{"answerability":{"type":"string","enum":["answerable","unanswerable"]}},"required":["answerability"]}""",
            // Query rewrite.
            """{"type":"object","properties":{"rewritten_question":{"type":"string","maxLength":80}},"required":["rewritten_question"],"additionalProperties":false}""",
            // Hallucination detection / citations: lists of sentence-level records.
            """{"type":"array","items":{"type":"object","properties":{"response_begin":{"type":"integer","minimum":0},"response_end":{"type":"integer","minimum":0},"faithfulness_likelihood":{"type":"number","minimum":0,"maximum":1},"explanation":{"type":"string","maxLength":60}},"required":["response_begin","response_end","faithfulness_likelihood"]},"maxItems":3}""",
        ];
        foreach (var (text, i) in schemas.Select((s, i) => (s, i)))
        {
            var schema = JsonNode.Parse(text)!;
            var validator = JsonSchema.FromText(text);
            for (int seed = 0; seed < 2; seed++)
            {
                var (output, finish, _) = Run(tokenizer, OutputConstraint.JsonSchema(schema), RandomLogits(tokenizer, seed), new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = (ulong)seed + 5 }, maxTokens: 600);
                Assert.Equal(FinishReason.Stop, finish);
                Assert.True(validator.Evaluate(JsonDocument.Parse(output).RootElement).IsValid, $"schema {i} gave {output}");
            }
        }
    }

    /// <summary>
    /// When the unconstrained greedy output already satisfies the constraint, constraining changes nothing: logits
    /// that make a valid document's tokens the argmax one by one give back exactly that document, token for token.
    /// </summary>
    [Theory]
    [InlineData("granite3")]
    [InlineData("llama3")]
    [InlineData("stories260K")]
    public void Greedy_constrained_equals_greedy_unconstrained_when_that_is_valid(string tokenizerName)
    {
        var tokenizer = TokenMaskTests.Load(tokenizerName);
        var cases = new (OutputConstraint Constraint, string Document)[]
        {
            (OutputConstraint.JsonSchema(JsonNode.Parse("""{"type":"object","properties":{"answer":{"enum":["yes","no"]},"confidence":{"type":"number","minimum":0,"maximum":1},"why":{"type":"string"}},"required":["answer"]}""")!),
                "{\"answer\": \"yes\", \"confidence\": 0.875, \"why\": \"It says so: \\\"yes\\\" — 日本\"}"),
            (OutputConstraint.JsonObject(), "{\"a\": [1, {\"b\": null}], \"c\": -2.5e-3}"),
            (OutputConstraint.Choice(["positive", "negative", "neutral"]), "neutral"),
            (OutputConstraint.Regex(@"\d{3}-[A-Z]{2} [a-z ]+\."), "123-AB once upon a time."),
        };
        int eos = tokenizer.EosTokenId ?? 0;
        foreach (var (constraint, document) in cases)
        {
            int[] expected = tokenizer.Encode(document, addSpecialTokens: false);
            if (tokenizer.TokenBytes()[expected[0]] is [(byte)' ', ..] && constraint.Kind is ConstraintKind.Choice or ConstraintKind.Regex) continue;  // SentencePiece's leading space
            var logits = new float[tokenizer.VocabSize];
            var (text, finish, ids) = Run(tokenizer, constraint, step =>
            {
                // The "model" ranks the document's next token first, end-of-sequence second, and everything else after in a fixed random order.
                var random = new Random(step);
                for (int id = 0; id < logits.Length; id++) logits[id] = (float)random.NextDouble();
                logits[eos] = 5;
                if (step < expected.Length) logits[expected[step]] = 10;
                return logits;
            });
            Assert.Equal(expected, ids);
            Assert.Equal(FinishReason.Stop, finish);
            Assert.EndsWith(document.TrimStart(), text);
        }
    }

    /// <summary>The same through the engine with the real stories260K model (base and an aLoRA): a regex its greedy output satisfies leaves the output unchanged.</summary>
    [Theory]
    [InlineData(null)]
    [InlineData("qa")]
    public async Task Greedy_output_of_a_real_model_is_unchanged_by_a_constraint_it_satisfies(string? adapter)
    {
        using var model = LanguageModel.Load(SharedPaths.Stories260K);
        if (adapter is not null) model.LoadAdapter(adapter, SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        int[] prompt = model.Encode("Lily had a red ball.\nQ:");
        async Task<(List<int> Ids, string Text)> Generate(OutputConstraint? constraint)
        {
            var ids = new List<int>();
            var text = new StringBuilder();
            await foreach (var u in model.GenerateAsync(new GenerationRequest { PromptIds = prompt, MaxTokens = 40, AdapterName = adapter, Constraint = constraint }))
            {
                if (u.TokenId >= 0) ids.Add(u.TokenId);
                text.Append(u.Text);
            }
            return (ids, text.ToString());
        }
        var free = await Generate(null);
        // A class of exactly the characters the free output used, repeated: the free output satisfies it, little else does.
        string characters = string.Concat(free.Text.Distinct().Order().Select(c => c is '\\' or ']' or '[' or '^' or '-' ? "\\" + c : c == '\n' ? "\\n" : c.ToString()));
        var constrained = await Generate(OutputConstraint.Regex($"[{characters}]*"));
        Assert.Equal(free.Ids, constrained.Ids);
        Assert.Equal(free.Text, constrained.Text);
        // And a constraint the free output breaks changes it.
        var digits = await Generate(OutputConstraint.Regex("[0-9 ]+"));
        Assert.Matches("^[0-9 ]*$", digits.Text);
    }

    [Fact]
    public void Guided_choice_returns_one_of_the_choices_under_sampling()
    {
        var tokenizer = TokenMaskTests.Load("granite3");
        string[] choices = ["The sky is blue", "The sky is green", "Maybe", "日本語"];
        for (int seed = 0; seed < 20; seed++)
        {
            var (text, finish, _) = Run(tokenizer, OutputConstraint.Choice(choices), RandomLogits(tokenizer, seed), new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = (ulong)seed + 1 });
            Assert.Equal(FinishReason.Stop, finish);
            Assert.Contains(text, choices);
        }
    }

    /// <summary>Random schemas over every supported keyword, bounded so random outputs end.</summary>
    private sealed class RandomSchema(int seed)
    {
        private readonly Random _r = new(seed);
        private readonly JsonObject _defs = [];

        public JsonNode Root()
        {
            var root = Node(0);
            if (_defs.Count > 0 && root is JsonObject o && !o.ContainsKey("$ref")) o["$defs"] = _defs;
            else if (_defs.Count > 0) root = new JsonObject { ["allOf"] = new JsonArray(root), ["$defs"] = _defs };
            return root;
        }

        private JsonNode Node(int depth)
        {
            int kind = _r.Next(depth >= 3 ? 7 : 11);
            return kind switch
            {
                0 => String(),
                1 => Integer(),
                2 => Number(),
                3 => new JsonObject { ["type"] = "boolean" },
                4 => new JsonObject { ["type"] = "null" },
                5 => new JsonObject { ["enum"] = new JsonArray("alpha", "beta gamma", 42, true, null, "日本") },
                6 => new JsonObject { ["const"] = _r.Next(2) == 0 ? "fixed" : JsonNode.Parse("""{"k":[1,2]}""") },
                7 or 8 => Object(depth),
                9 => new JsonObject { ["type"] = "array", ["items"] = Node(depth + 1), ["minItems"] = _r.Next(2), ["maxItems"] = 2 + _r.Next(2) },
                _ => _r.Next(2) == 0
                    ? new JsonObject { [_r.Next(2) == 0 ? "anyOf" : "oneOf"] = new JsonArray(new JsonObject { ["type"] = "integer" }, new JsonObject { ["type"] = "string", ["maxLength"] = 5 }) }
                    : Ref(depth),
            };
        }

        private JsonNode Ref(int depth)
        {
            string name = "d" + _defs.Count;
            _defs[name] = Node(depth + 1);
            return new JsonObject { ["$ref"] = "#/$defs/" + name };
        }

        private JsonObject String() => _r.Next(4) switch
        {
            0 => new JsonObject { ["type"] = "string", ["maxLength"] = 6 },
            1 => new JsonObject { ["type"] = "string", ["minLength"] = 1, ["maxLength"] = 4 },
            2 => new JsonObject { ["type"] = "string", ["pattern"] = "^[a-z]{2,4}-\\d+$" },
            _ => new JsonObject { ["type"] = "string", ["format"] = "date" },
        };

        private JsonObject Integer()
        {
            var o = new JsonObject { ["type"] = "integer" };
            if (_r.Next(2) == 0) o["minimum"] = _r.Next(-50, 50);
            if (_r.Next(2) == 0) o["maximum"] = _r.Next(50, 5000);
            return o;
        }

        private JsonObject Number()
        {
            var o = new JsonObject { ["type"] = "number" };
            if (_r.Next(2) == 0) o["minimum"] = Math.Round(_r.NextDouble() * 10 - 5, 2);
            if (_r.Next(2) == 0) o["maximum"] = Math.Round(5 + _r.NextDouble() * 10, 2);
            return o;
        }

        private JsonObject Object(int depth)
        {
            var properties = new JsonObject();
            var required = new JsonArray();
            int count = 1 + _r.Next(3);
            for (int i = 0; i < count; i++)
            {
                string name = (string[])["id", "name", "value", "items", "note"] is var names ? names[_r.Next(names.Length)] + i : "";
                properties[name] = Node(depth + 1);
                if (_r.Next(2) == 0) required.Add(name);
            }
            var o = new JsonObject { ["type"] = "object", ["properties"] = properties, ["required"] = required };
            if (_r.Next(2) == 0) o["additionalProperties"] = false;
            return o;
        }
    }
}
