using System.Text;

namespace Alora.Tokenization;

public sealed partial class Tokenizer
{
    private byte[]?[]? _tokenBytes;

    /// <summary>
    /// The bytes each id adds to the text when it comes in the middle of a sequence, or null for special
    /// tokens (which a constraint never allows). Byte-level tokens give their bytes, SentencePiece byte tokens
    /// (&lt;0xNN&gt;) their one byte, and '▁' is a space; a piece may be part of a UTF-8 character. Steps that act
    /// only at the start of a text (stripping the first space) do not apply. [VocabSize], built once.
    /// </summary>
    public IReadOnlyList<byte[]?> TokenBytes() => _tokenBytes ??= BuildTokenBytes();

    private byte[]?[] BuildTokenBytes()
    {
        var steps = _pipeline.Decoder switch
        {
            null => [],
            SequenceDecoder sequence => sequence.Steps,
            var single => [single],
        };
        var table = new byte[]?[_idToToken.Length];
        var scratch = new List<byte>();
        for (int id = 0; id < table.Length; id++)
        {
            string? token = _idToToken[id];
            if (token is null || _isSpecial[id]) continue;
            table[id] = _addedByContent.TryGetValue(token, out int addedId) && addedId == id && !_pipeline.Model.TokenToId(token).HasValue
                ? Encoding.UTF8.GetBytes(token)   // an added (non-special) token: its content is its text
                : MidSequenceBytes(token, steps, scratch);
        }
        return table;
    }

    /// <summary>One token through the decoder steps as a piece that is neither first nor alone.</summary>
    private static byte[] MidSequenceBytes(string token, IReadOnlyList<Decoder> steps, List<byte> scratch)
    {
        string text = token;
        bool fused = false;
        foreach (var step in steps)
        {
            switch (step)
            {
                case ByteLevelDecoder:
                    scratch.Clear();
                    ByteLevelAlphabet.AppendBytes(text, scratch);
                    return [.. scratch];     // bytes now: later steps act on the decoded text, which one token cannot change
                case ByteFallbackDecoder when ByteFallbackDecoder.TryParseByteToken(text, out byte value):
                    return [value];
                case ByteFallbackDecoder:
                    break;
                case MetaspaceDecoder metaspace:
                    text = text.Replace(metaspace.Replacement, ' ');
                    break;
                case ReplaceDecoder replace:
                    text = replace.Apply(text);
                    break;
                case FuseDecoder:
                    fused = true;
                    break;
                case StripDecoder when fused:
                    break;                   // after Fuse it strips the whole text's ends: nothing in mid-sequence
                case StripDecoder strip:
                    text = string.Concat(strip.DecodeChain([text]));
                    break;
                default:
                    text = string.Concat(step.DecodeChain([text]));
                    break;
            }
        }
        return Encoding.UTF8.GetBytes(text);
    }
}
