using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Streaming decode gives the same text as a whole decode, piece by piece, never half a character.</summary>
public class StreamingDecoderTests
{
    public static TheoryData<string> Names() => new(TokenizerFixtures.Names);

    [Theory, MemberData(nameof(Names))]
    public void StreamedTextEqualsDecodeForEveryFixture(string name)
    {
        var tokenizer = TokenizerFixtures.Load(name);
        var failures = new List<string>();
        foreach (var row in TokenizerFixtures.Rows(name))
        {
            foreach (bool skip in new[] { false, true })
            {
                var stream = tokenizer.CreateStreamingDecoder(skip);
                var text = new System.Text.StringBuilder();
                foreach (int id in row.Ids)
                {
                    string piece = stream.Append(id);
                    if (piece.Length > 0 && char.IsHighSurrogate(piece[^1])) failures.Add($"{row.Id}: a piece ends in half a surrogate pair");
                    text.Append(piece);
                }
                text.Append(stream.Flush());
                string whole = tokenizer.Decode(row.Ids, skip);
                if (text.ToString() != whole) failures.Add($"{row.Id} skip={skip}: streamed {TokenizerFixtures.Escape(text.ToString())}, whole {TokenizerFixtures.Escape(whole)}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }

    [Theory]
    [InlineData("Hello . World , ok ! Is n't it ' s")]
    [InlineData("x ' y")]
    [InlineData("I 'm here . .")]
    [InlineData(" .")]
    public void CleanUpOfTokenizationSpacesIsStreamedExactly(string text)
    {
        // granite3's tokenizer_config.json asks for clean-up: " ." must not come out as " " then ".".
        var tokenizer = TokenizerFixtures.Load("granite3");
        Assert.True(tokenizer.CleansUpTokenizationSpaces);
        int[] ids = tokenizer.Encode(text, addSpecialTokens: false);
        var stream = tokenizer.CreateStreamingDecoder();
        string streamed = string.Concat(ids.Select(stream.Append)) + stream.Flush();
        Assert.Equal(tokenizer.Decode(ids), streamed);
    }

    [Fact]
    public void RandomPunctuationAndSpacesStreamExactly()
    {
        var tokenizer = TokenizerFixtures.Load("llama3");
        var random = new Random(5);
        string[] atoms = [" ", "  ", ".", ",", "!", "?", "'", "'s", "n't", " n't", "'m", "'ve", "'re", "a", "word", "\n", "é", "😀"];
        for (int i = 0; i < 300; i++)
        {
            string text = string.Concat(Enumerable.Range(0, random.Next(1, 25)).Select(_ => atoms[random.Next(atoms.Length)]));
            int[] ids = tokenizer.Encode(text, addSpecialTokens: false);
            var stream = tokenizer.CreateStreamingDecoder();
            string streamed = string.Concat(ids.Select(stream.Append)) + stream.Flush();
            Assert.True(tokenizer.Decode(ids) == streamed, $"{TokenizerFixtures.Escape(text)}: streamed {TokenizerFixtures.Escape(streamed)}");
        }
    }

    [Fact]
    public void PrimedDecoderContinuesThePrompt()
    {
        // SentencePiece: alone, "▁world" would lose its space as the first token; after a primed prompt it keeps it.
        var tokenizer = TokenizerFixtures.Load("stories260K");
        int[] prompt = tokenizer.Encode("Once upon a time");
        int[] continuation = tokenizer.Encode(" there was", addSpecialTokens: false);
        var stream = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        stream.Prime(prompt.AsSpan(Math.Max(0, prompt.Length - 4)));
        string streamed = string.Concat(continuation.Select(stream.Append)) + stream.Flush();
        string whole = tokenizer.Decode([.. prompt, .. continuation], skipSpecialTokens: true);
        string promptText = tokenizer.Decode(prompt, skipSpecialTokens: true);
        Assert.Equal(whole, promptText + streamed);
    }

    [Fact]
    public void MultiByteCharacterComesOutWhole()
    {
        // "😀" is four byte-level tokens' worth of bytes in granite3; nothing comes out until the last one.
        var tokenizer = TokenizerFixtures.Load("granite3");
        int[] ids = tokenizer.Encode("a😀", addSpecialTokens: false);
        var stream = tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Append).ToList();
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal("a😀", string.Concat(pieces) + stream.Flush());
    }

    [Fact]
    public void SentencePieceBytesComeOutWhole()
    {
        var tokenizer = TokenizerFixtures.Load("stories260K");
        int[] ids = tokenizer.Encode("hi ¥", addSpecialTokens: false); // '¥' is two <0xNN> tokens (C2 A5) in this vocabulary
        var stream = tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Append).ToList();
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal("hi ¥", string.Concat(pieces) + stream.Flush());
        Assert.Equal("", pieces[^2]); // the first byte of two completes nothing
    }
}
