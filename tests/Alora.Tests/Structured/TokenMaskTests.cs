using System.Text;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Structured;
using Alora.Tokenization;
using Xunit;

namespace Alora.Tests.Structured;

/// <summary>Token masks over real vocabularies: byte-level BPE (49k, 128k) and SentencePiece with byte fallback.</summary>
public class TokenMaskTests
{
    public static readonly TheoryData<string> Tokenizers = new() { "granite3", "llama3", "stories260K", "qwen3", "maykeye-tinyllama-v0" };

    internal static Tokenizer Load(string name) => Cache.GetOrAdd(name, n => Tokenizer.Load(n == "stories260K" ? SharedPaths.Stories260K : SharedPaths.Path("tokenizers", n)));

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Tokenizer> Cache = new();

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Token_bytes_spell_the_text_they_encode(string name)
    {
        var tokenizer = Load(name);
        var bytes = tokenizer.TokenBytes();
        foreach (string text in (string[])["Hello world, it's 2026!", "{\"a\": [1, 2.5e3, \"x\\ny\"]}", "日本語のテキスト 😀 naïve café", "  two  spaces\tand\ttabs\n\nnewlines"])
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: false);
            var spelled = Encoding.UTF8.GetString([.. ids.SelectMany(id => bytes[id] ?? throw new Xunit.Sdk.XunitException($"{name}: token {id} has no bytes"))]);
            // SentencePiece tokenizers add a leading space ('▁') that decoding strips at the start of a text.
            Assert.True(spelled == text || spelled == " " + text, $"{name}: {Escape(spelled)} vs {Escape(text)}");
        }
        for (int id = 0; id < tokenizer.VocabSize; id++)
            if (tokenizer.IsSpecial(id)) Assert.Null(bytes[id]);
    }

    private static string Escape(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    /// <summary>
    /// The mask allows every token of any tokenization of a valid output: here the tokenizer's own encoding of
    /// valid documents, which split multi-byte characters across byte tokens (SentencePiece byte fallback) and put
    /// several grammar symbols in one token ("\":", "},{", "\"}").
    /// </summary>
    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void The_mask_never_forbids_a_token_of_a_valid_output(string name)
    {
        var tokenizer = Load(name);
        var vocabulary = TokenVocabulary.For(tokenizer);
        var schema = JsonNode.Parse("""
            {"type":"object","properties":{
              "name":{"type":"string","maxLength":40},
              "tags":{"type":"array","items":{"enum":["red","green","日本"]},"maxItems":4},
              "score":{"type":"number","minimum":0,"maximum":1},
              "count":{"type":"integer","minimum":-5,"maximum":500},
              "nested":{"type":"object","properties":{"ok":{"type":"boolean"},"note":{"type":["string","null"]}},"required":["ok"]}},
             "required":["name","tags","nested"],"additionalProperties":false}
            """)!;
        string[] documents =
        [
            """{"name":"café 😀 naïve","tags":["red","日本"],"score":0.25,"count":-5,"nested":{"ok":true,"note":null}}""",
            "{\n  \"name\": \"A \\\"quoted\\\" \\u00e9 name\",\n  \"tags\": [],\n  \"count\": 500,\n  \"nested\": {\"ok\": false, \"note\": \"日本語\"}\n}",
            """{"name":"","tags":["green","green","red","日本"],"score":1,"nested":{"ok":true}}""",
        ];
        int eos = tokenizer.EosTokenId ?? 0;
        foreach (string document in documents)
        {
            Assert.True(GrammarTests.Matches(OutputConstraint.JsonSchema(schema), document), document);
            var matcher = TokenConstraint.Compile(OutputConstraint.JsonSchema(schema), vocabulary).Start();
            var logits = new float[tokenizer.VocabSize];
            foreach (int id in tokenizer.Encode(document, addSpecialTokens: false))
            {
                Array.Fill(logits, 0f);
                matcher.MaskLogits(logits, [eos]);
                Assert.False(float.IsNegativeInfinity(logits[id]), $"{name}: token {id} ({Escape(tokenizer.IdToToken(id)!)}) of {document} is masked");
                Assert.True(float.IsNegativeInfinity(logits[eos]), "end-of-sequence before the object is complete");
                matcher.Accept(id);
            }
            Assert.True(matcher.IsFinal);
        }
    }

    [Fact]
    public void Special_tokens_are_never_allowed_and_end_of_sequence_only_where_the_output_may_end()
    {
        var tokenizer = Load("granite3");
        var vocabulary = TokenVocabulary.For(tokenizer);
        int eos = tokenizer.EosTokenId!.Value;
        var matcher = TokenConstraint.Compile(OutputConstraint.Regex("[0-9]+"), vocabulary).Start();
        var logits = new float[tokenizer.VocabSize];
        matcher.MaskLogits(logits, [eos]);
        Assert.True(float.IsNegativeInfinity(logits[eos]));
        for (int id = 0; id < tokenizer.VocabSize; id++)
            if (tokenizer.IsSpecial(id)) Assert.True(float.IsNegativeInfinity(logits[id]), $"special token {id} allowed");
        int allowed = logits.Count(x => x == 0);
        int digitsOnly = Enumerable.Range(0, tokenizer.VocabSize).Count(id => tokenizer.TokenBytes()[id] is { Length: > 0 } b && b.All(c => c is >= (byte)'0' and <= (byte)'9'));
        Assert.Equal(digitsOnly, allowed);
        foreach (int id in tokenizer.Encode("42", addSpecialTokens: false)) matcher.Accept(id);
        Array.Fill(logits, 0f);
        matcher.MaskLogits(logits, [eos]);
        Assert.Equal(0f, logits[eos]);
        Assert.False(matcher.IsFinal);
    }

    [Fact]
    public void Masks_are_computed_once_per_state_and_shared_by_requests_with_the_same_constraint()
    {
        var vocabulary = TokenVocabulary.For(Load("granite3"));
        var constraint = OutputConstraint.JsonSchema(JsonNode.Parse("""{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}""")!);
        var compiled = TokenConstraint.Compile(constraint, vocabulary);
        Assert.Same(compiled, TokenConstraint.Compile(OutputConstraint.JsonSchema(JsonNode.Parse("""{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}""")!), vocabulary));
        var logits = new float[vocabulary.Size];
        long before = compiled.MasksComputed;
        for (int request = 0; request < 3; request++)
        {
            var matcher = compiled.Start();
            foreach (int id in Load("granite3").Encode("{\"q\": \"abc abc abc\"}", addSpecialTokens: false))
            {
                matcher.MaskLogits(logits, []);
                matcher.Accept(id);
            }
        }
        long computed = compiled.MasksComputed - before;
        Assert.True(compiled.MasksReused >= 2 * computed, $"computed {computed}, reused {compiled.MasksReused}");
    }
}
