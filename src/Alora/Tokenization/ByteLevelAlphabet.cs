namespace Alora.Tokenization;

/// <summary>
/// GPT-2's reversible map between bytes and printable characters: byte-level BPE vocabularies store
/// every byte as one visible character ('Ġ' for a space, 'Ċ' for a newline), so a token is a string.
/// Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100 upwards in byte order.
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>Character for each byte value. [256]</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Byte for each character below U+0144, or -1 where the character is not in the alphabet. [0x144]</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static bool IsPrintableSelf(int b) => (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++) map[b] = IsPrintableSelf(b) ? (char)b : (char)next++;
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[0x144];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[ByteToChar[b]] = (short)b;
        return map;
    }

    /// <summary>Maps text to its byte-level form: UTF-8 bytes, each replaced by its alphabet character.</summary>
    public static string Encode(ReadOnlySpan<char> text)
    {
        char[] buffer = System.Buffers.ArrayPool<char>.Shared.Rent(text.Length * 3 + 1);
        int length = EncodeInto(text, buffer);
        string result = new(buffer, 0, length);
        System.Buffers.ArrayPool<char>.Shared.Return(buffer);
        return result;
    }

    /// <summary>
    /// Writes the byte-level form of <paramref name="text"/> into <paramref name="destination"/>
    /// (which must hold 3 chars per UTF-16 unit) and returns the length written.
    /// </summary>
    public static int EncodeInto(ReadOnlySpan<char> text, Span<char> destination)
    {
        int written = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int c = text[i];
            if (c < 0x80) { destination[written++] = ByteToChar[c]; continue; }
            if (c < 0x800)
            {
                destination[written++] = ByteToChar[0xC0 | (c >> 6)];
                destination[written++] = ByteToChar[0x80 | (c & 0x3F)];
                continue;
            }
            if (char.IsHighSurrogate((char)c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                int cp = char.ConvertToUtf32((char)c, text[i + 1]);
                i++;
                destination[written++] = ByteToChar[0xF0 | (cp >> 18)];
                destination[written++] = ByteToChar[0x80 | ((cp >> 12) & 0x3F)];
                destination[written++] = ByteToChar[0x80 | ((cp >> 6) & 0x3F)];
                destination[written++] = ByteToChar[0x80 | (cp & 0x3F)];
                continue;
            }
            if (char.IsSurrogate((char)c)) c = 0xFFFD; // a lone surrogate has no UTF-8 form; Rust strings cannot hold one either
            destination[written++] = ByteToChar[0xE0 | (c >> 12)];
            destination[written++] = ByteToChar[0x80 | ((c >> 6) & 0x3F)];
            destination[written++] = ByteToChar[0x80 | (c & 0x3F)];
        }
        return written;
    }

    /// <summary>
    /// Appends the bytes a byte-level token stands for. A token holding any character outside the
    /// alphabet (an added token such as "&lt;|eot_id|&gt;" written in plain text) contributes its own UTF-8 bytes.
    /// </summary>
    public static void AppendBytes(string token, List<byte> output)
    {
        foreach (char c in token)
        {
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                output.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (char c in token) output.Add((byte)CharToByte[c]);
    }
}
