using System.Text;

namespace Alora.Tokenization;

/// <summary>Turns token strings back into text (tokenizers' decoder): each step maps the list of pieces.</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);
}

/// <summary>Byte-level tokens back to bytes, then UTF-8 (invalid sequences become U+FFFD).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var token in tokens) ByteLevelAlphabet.AppendBytes(token, bytes);
        return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
    }
}

/// <summary>Runs of &lt;0xNN&gt; tokens back to the text their bytes spell.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (var token in tokens)
        {
            if (TryParseByteToken(token, out byte value))
            {
                pending.Add(value);
                continue;
            }
            Flush(pending, output);
            output.Add(token);
        }
        Flush(pending, output);
        return output;
    }

    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out value);
    }

    // Invalid UTF-8 becomes U+FFFD for each maximal invalid subsequence (the WHATWG decoder
    // transformers.js uses); a leading BOM is kept, as Python and Rust keep it.
    private static void Flush(List<byte> pending, List<string> output)
    {
        if (pending.Count == 0) return;
        output.Add(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pending)));
        pending.Clear();
    }
}

/// <summary>Joins all pieces into one.</summary>
internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of a character from each piece.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        foreach (var token in tokens)
        {
            int from = 0;
            while (from < start && from < token.Length && token[from] == content) from++;
            int to = token.Length;
            while (token.Length - to < stop && to > from && token[to - 1] == content) to--;
            output.Add(token[from..to]);
        }
        return output;
    }
}

/// <summary>Replaces a literal string (or regex) in each piece.</summary>
internal sealed class ReplaceDecoder(ReplaceNormalizer replacement) : Decoder
{
    public string Apply(string piece) => replacement.Apply(piece);

    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(replacement.Apply);
}

/// <summary>
/// SentencePiece's '▁' back to spaces. In the first piece the '▁' are dropped instead (they are the prefix
/// the pre-tokenizer added), unless the prepend scheme is "never" — tokenizers' rule, which transformers.js
/// narrows to a single leading space; the two differ only for a first token of several '▁'.
/// </summary>
internal sealed class MetaspaceDecoder(char replacement, bool stripsPrefix) : Decoder
{
    public char Replacement => replacement;

    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
            output.Add(i == 0 && stripsPrefix ? tokens[i].Replace(replacement.ToString(), "", StringComparison.Ordinal) : tokens[i].Replace(replacement, ' '));
        return output;
    }
}

/// <summary>Applies decoders one after the other.</summary>
internal sealed class SequenceDecoder(IReadOnlyList<Decoder> steps) : Decoder
{
    public IReadOnlyList<Decoder> Steps => steps;

    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var step in steps) tokens = step.DecodeChain(tokens);
        return tokens;
    }
}
