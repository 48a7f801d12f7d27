using System.Buffers;
using System.Numerics;
using System.Text;
using System.Text.Unicode;

namespace Alora.Formats;

/// <summary>UTF-8 checks for the JSON the loaders read: System.Text.Json validates a string's UTF-8 only when the
/// string is read, and then throws InvalidOperationException deep inside a parse, so each file is checked first.</summary>
public static class Utf8Text
{
    /// <summary>Options for parsing files and requests: a key given twice is a JsonException when parsed (JsonObject
    /// would otherwise throw ArgumentException on first lookup, far from the file).</summary>
    public static System.Text.Json.JsonDocumentOptions StrictJson { get; } = new() { AllowDuplicateProperties = false };

    /// <summary>The offset of the first byte that is not part of a valid UTF-8 sequence, or -1 when all are. Linear time.</summary>
    public static long FirstInvalidByte(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes)) return -1;
        Span<char> buffer = stackalloc char[1024];
        long offset = 0;
        while (true)
        {
            var status = Utf8.ToUtf16(bytes[(int)offset..], buffer, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
            offset += read;
            if (status != OperationStatus.DestinationTooSmall) return status == OperationStatus.Done ? -1 : offset;
        }
    }

    /// <summary>What makes JSON text unreadable as strings, for a message: "not valid UTF-8 (first bad byte 0xFF at
    /// offset N)" or "a \uD800 escape at offset N is half a surrogate pair"; null when neither.</summary>
    public static string? DescribeInvalid(ReadOnlySpan<byte> bytes, long baseOffset = 0)
    {
        long bad = FirstInvalidByte(bytes);
        if (bad >= 0) return $"not valid UTF-8: first bad byte 0x{bytes[(int)Math.Min(bad, bytes.Length - 1)]:X2} at offset {baseOffset + bad}";
        long lone = FirstLoneSurrogateEscape(bytes);
        return lone < 0 ? null : $"the escape {Encoding.ASCII.GetString(bytes.Slice((int)lone, 6))} at offset {baseOffset + lone} is half a UTF-16 surrogate pair";
    }

    /// <summary>The same check for JSON already read as text (offsets are in characters).</summary>
    public static string? DescribeInvalid(string text)
    {
        long lone = FirstLoneSurrogateEscape(text.AsSpan());
        return lone < 0 ? null : $"the escape {text.Substring((int)lone, 6)} at character {lone} is half a UTF-16 surrogate pair";
    }

    /// <summary>
    /// The offset of the first \uXXXX escape that is half a surrogate pair (a high one not followed by a low one, or a
    /// low one alone), or -1. System.Text.Json accepts such escapes when it parses and throws
    /// InvalidOperationException when the string is read. Backslashes only occur inside JSON strings, so a linear scan
    /// over escapes suffices.
    /// </summary>
    private static long FirstLoneSurrogateEscape<T>(ReadOnlySpan<T> text) where T : unmanaged, IBinaryInteger<T>
    {
        int length = text.Length;
        for (int i = 0; i < length - 1; i++)
        {
            if (At(text, i) != '\\') continue;
            if (At(text, i + 1) != 'u') { i++; continue; }
            int unit = Hex4(text, i);
            if (unit is >= 0xDC00 and <= 0xDFFF) return i;
            if (unit is >= 0xD800 and <= 0xDBFF)
            {
                if (Hex4(text, i + 6) is not (>= 0xDC00 and <= 0xDFFF)) return i;
                i += 11;
                continue;
            }
            i += 5;
        }
        return -1;
    }

    private static char At<T>(ReadOnlySpan<T> text, int i) where T : unmanaged, IBinaryInteger<T> => (char)int.CreateTruncating(text[i]);

    private static int Hex4<T>(ReadOnlySpan<T> text, int i) where T : unmanaged, IBinaryInteger<T>
    {
        if (i + 6 > text.Length || At(text, i) != '\\' || At(text, i + 1) != 'u') return -1;
        int value = 0;
        for (int k = 2; k < 6; k++)
        {
            int digit = HexDigit(At(text, i + k));
            if (digit < 0) return -1;
            value = value * 16 + digit;
        }
        return value;
    }

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
