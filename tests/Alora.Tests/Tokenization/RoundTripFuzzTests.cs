using System.Text;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Byte-level BPE loses nothing: decode(encode(s)) == s for random Unicode text (seeded, so failures repeat).</summary>
public class RoundTripFuzzTests
{
    // tokenizer.json alone: no clean_up_tokenization_spaces, which would rewrite " ." on purpose.
    public static TheoryData<string> ByteLevelTokenizers() => new("granite3", "llama3", "qwen3");

    private static readonly (int From, int To)[] Ranges =
    [
        (0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
        (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAFFF), (0x2000, 0x206F), (0x1F300, 0x1F64F), (0x10000, 0x1007F),
    ];

    private static string RandomText(Random random, int length)
    {
        var builder = new StringBuilder();
        for (int i = 0; i < length; i++)
        {
            var (from, to) = Ranges[random.Next(Ranges.Length)];
            int cp = random.Next(from, to + 1);
            builder.Append(char.ConvertFromUtf32(cp));
        }
        return builder.ToString();
    }

    [Theory, MemberData(nameof(ByteLevelTokenizers))]
    public void RandomUnicodeRoundTrips(string name)
    {
        var tokenizer = Tokenizer.FromTokenizerJson(Path.Combine(TokenizerFixtures.FolderOf(name), "tokenizer.json"));
        var random = new Random(20261122);
        var failures = new List<string>();
        for (int i = 0; i < 400; i++)
        {
            string text = RandomText(random, random.Next(1, 40));
            // Qwen's NFC normalizer may compose characters: the round trip then gives the NFC form.
            string expected = name == "qwen3" ? UnicodeNormalization.Normalize(text, NormalizationForm.FormC) : text;
            string decoded = tokenizer.Decode(tokenizer.Encode(text, addSpecialTokens: false));
            if (decoded != expected) failures.Add($"{TokenizerFixtures.Escape(text)} -> {TokenizerFixtures.Escape(decoded)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }
}
