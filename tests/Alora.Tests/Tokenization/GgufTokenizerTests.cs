using Alora.Formats;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>stories260K's SentencePiece vocabulary read from GGUF metadata must tokenize exactly as its tokenizer.json.</summary>
public class GgufTokenizerTests
{
    private static readonly Lazy<Tokenizer> FromGgufFile = new(() =>
    {
        using var gguf = GgufFile.Open(SharedPaths.Path("models", "stories260K", "stories260K.gguf"));
        return Tokenizer.FromGguf(gguf);
    });

    [Fact]
    public void VocabularyIsReadFromMetadata()
    {
        using var gguf = GgufFile.Open(SharedPaths.Path("models", "stories260K", "stories260K.gguf"));
        var vocabulary = GgufVocabulary.Read(gguf);
        Assert.Equal("llama", vocabulary.Model);
        Assert.Equal(512, vocabulary.Tokens.Length);
        Assert.NotNull(vocabulary.Scores);
        Assert.Equal(GgufTokenType.Control, vocabulary.TypeOf(1));
        var tokenizer = FromGgufFile.Value;
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        Assert.True(tokenizer.IsSpecial(1));
    }

    [Fact]
    public void EncodesEveryFixtureStringLikeTokenizerJson()
    {
        var fromJson = TokenizerFixtures.Load("stories260K");
        var fromGguf = FromGgufFile.Value;
        var failures = new List<string>();
        foreach (var row in TokenizerFixtures.Rows("stories260K"))
        {
            foreach (bool special in new[] { true, false })
            {
                var expected = fromJson.Encode(row.Text, special);
                var actual = fromGguf.Encode(row.Text, special);
                if (!expected.SequenceEqual(actual))
                    failures.Add($"{row.Id} special={special} {TokenizerFixtures.Escape(row.Text)}: json {TokenizerFixtures.Show(expected)}, gguf {TokenizerFixtures.Show(actual)}");
            }
            if (!fromGguf.Encode(row.Text).SequenceEqual(row.Ids))
                failures.Add($"{row.Id}: fixture {TokenizerFixtures.Show(row.Ids)}, gguf {TokenizerFixtures.Show(fromGguf.Encode(row.Text))}");
            string decoded = fromGguf.Decode(row.Ids);
            if (decoded != row.ExpectedDecoded) failures.Add($"{row.Id} decode: expected {TokenizerFixtures.Escape(row.ExpectedDecoded)}, got {TokenizerFixtures.Escape(decoded)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(15)));
    }

    [Fact]
    public void LoadPicksGgufByExtension()
    {
        var tokenizer = Tokenizer.Load(SharedPaths.Path("models", "stories260K", "stories260K.gguf"));
        Assert.Equal(FromGgufFile.Value.Encode("Once upon a time"), tokenizer.Encode("Once upon a time"));
    }

    [Fact]
    public void UnknownGgufTokenizerModelIsNamed()
    {
        var vocabulary = new GgufVocabulary("bert", ["[PAD]"], null, null, null, null, null, null, null, null, null, null, null, "test.gguf");
        var error = Assert.Throws<NotSupportedException>(() => Tokenizer.FromGgufVocabulary(vocabulary));
        Assert.Contains("'bert'", error.Message);
        Assert.Contains("test.gguf", error.Message);
    }

    [Fact]
    public void Gpt2StyleVocabularyUsesMergesAndItsPreTokenizer()
    {
        // A tiny byte-level vocabulary: single bytes for "a", "b", "Ġ" (space) and the merges "a b" -> "ab", "Ġ ab" -> "Ġab".
        string[] tokens = ["a", "b", "\u0120", "ab", "\u0120ab", "<|end|>"];
        var types = new[] { GgufTokenType.Normal, GgufTokenType.Normal, GgufTokenType.Normal, GgufTokenType.Normal, GgufTokenType.Normal, GgufTokenType.Control };
        var vocabulary = new GgufVocabulary("gpt2", tokens, null, types, ["a b", "\u0120 ab"], null, 5, null, null, false, false, "gpt2", null, "tiny.gguf");
        var tokenizer = Tokenizer.FromGgufVocabulary(vocabulary);
        Assert.Equal([3, 4, 5, 0], tokenizer.Encode("ab ab<|end|>a"));
        Assert.Equal("ab ab<|end|>a", tokenizer.Decode([3, 4, 5, 0]));
        Assert.Equal("ab aba", tokenizer.Decode([3, 4, 5, 0], skipSpecialTokens: true));
        Assert.Throws<NotSupportedException>(() => Tokenizer.FromGgufVocabulary(vocabulary with { PreTokenizer = "mystery" }));
    }

    [Fact]
    public void GgufWithoutTokenizerOrWithBadArraysIsNamed()
    {
        using var folder = new TempFolder();
        string bare = folder.File("bare.gguf");
        GgufWriter.Write(bare, [new("general.architecture", "llama")], []);
        var error = Assert.Throws<InvalidDataException>(() => Tokenizer.Load(bare));
        Assert.Contains("tokenizer.ggml.model", error.Message);
        Assert.Contains("bare.gguf", error.Message);

        string mismatched = folder.File("mismatched.gguf");
        GgufWriter.Write(mismatched,
        [
            new("tokenizer.ggml.model", "llama"),
            new("tokenizer.ggml.tokens", new[] { "<unk>", "<s>", "</s>" }),
            new("tokenizer.ggml.scores", new[] { 0f, 0f }),
        ], []);
        error = Assert.Throws<InvalidDataException>(() => Tokenizer.Load(mismatched));
        Assert.Contains("tokenizer.ggml.scores", error.Message);
        Assert.Contains("expected 3", error.Message);
    }
}
