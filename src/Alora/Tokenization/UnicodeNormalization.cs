using System.Globalization;
using System.Text;

namespace Alora.Tokenization;

/// <summary>
/// NFC, NFD, NFKC and NFKD (Unicode Standard Annex #15) over the tables in <see cref="UnicodeNormalizationData"/>.
/// The runtime's string.Normalize cannot be used: with InvariantGlobalization it returns non-ASCII text unchanged.
/// </summary>
internal static class UnicodeNormalization
{
    // Hangul syllables decompose and compose by arithmetic (Unicode §3.12).
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private sealed class Tables
    {
        public readonly Dictionary<int, int[]> Canonical = new();
        public readonly Dictionary<int, int[]> Compatibility = new();
        public readonly Dictionary<int, byte> CombiningClass = new();
        public readonly Dictionary<long, int> Composites = new();
    }

    private static readonly Lazy<Tables> Data = new(Parse);

    public static string Normalize(string text, NormalizationForm form)
    {
        bool compose = form is NormalizationForm.FormC or NormalizationForm.FormKC;
        bool compatibility = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        // Below U+00A0 nothing decomposes; below U+0300 nothing is a combining mark, so NFC is already met.
        int stableBelow = form == NormalizationForm.FormC ? 0x300 : 0xA0;
        bool stable = true;
        foreach (char c in text) if (c >= stableBelow) { stable = false; break; }
        if (stable) return text;

        var tables = Data.Value;
        var codePoints = new List<int>(text.Length + 8);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) cp = char.ConvertToUtf32(text[i], text[++i]);
            Decompose(cp, compatibility, tables, codePoints);
        }
        ReorderCanonically(codePoints, tables);
        if (compose) ComposeInPlace(codePoints, tables);

        var builder = new StringBuilder(codePoints.Count);
        foreach (int cp in codePoints)
        {
            if (cp >= 0x10000) builder.Append(char.ConvertFromUtf32(cp));
            else builder.Append((char)cp);
        }
        return builder.ToString();
    }

    private static void Decompose(int cp, bool compatibility, Tables tables, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (compatibility && tables.Compatibility.TryGetValue(cp, out var compat)) output.AddRange(compat);
        else if (tables.Canonical.TryGetValue(cp, out var canonical)) output.AddRange(canonical);
        else output.Add(cp);
    }

    private static int ClassOf(int cp, Tables tables) => tables.CombiningClass.TryGetValue(cp, out byte c) ? c : 0;

    // Stable sort of each run of non-starters by combining class (insertion sort: runs are short).
    private static void ReorderCanonically(List<int> codePoints, Tables tables)
    {
        for (int i = 1; i < codePoints.Count; i++)
        {
            int cls = ClassOf(codePoints[i], tables);
            if (cls == 0) continue;
            int j = i;
            while (j > 0)
            {
                int previousClass = ClassOf(codePoints[j - 1], tables);
                if (previousClass <= cls) break;
                (codePoints[j - 1], codePoints[j]) = (codePoints[j], codePoints[j - 1]);
                j--;
            }
        }
    }

    private static void ComposeInPlace(List<int> codePoints, Tables tables)
    {
        int starter = -1;      // index in the output of the last starter, or -1
        int lastClass = -1;    // class of the last character kept after that starter; -1 when adjacent
        int written = 0;
        for (int i = 0; i < codePoints.Count; i++)
        {
            int cp = codePoints[i];
            int cls = ClassOf(cp, tables);
            bool blocked = lastClass != -1 && (lastClass == 0 || lastClass >= cls);
            if (starter >= 0 && !blocked && TryCompose(codePoints[starter], cp, tables, out int composite))
            {
                codePoints[starter] = composite;
                continue;
            }
            if (cls == 0) { starter = written; lastClass = -1; }
            else lastClass = cls;
            codePoints[written++] = cp;
        }
        codePoints.RemoveRange(written, codePoints.Count - written);
    }

    private static bool TryCompose(int first, int second, Tables tables, out int composite)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
            return true;
        }
        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0 && second > TBase && second < TBase + TCount)
        {
            composite = first + (second - TBase);
            return true;
        }
        return tables.Composites.TryGetValue(((long)first << 21) | (uint)second, out composite);
    }

    private static Tables Parse()
    {
        var tables = new Tables();
        foreach (var rawLine in UnicodeNormalizationData.Table.Split('\n'))
        {
            var line = rawLine.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var fields = line.Split(' ');
            int cp = int.Parse(fields[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int[] rest = fields.Skip(2).Select(f => int.Parse(f, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
            switch (fields[0])
            {
                case "D": tables.Canonical[cp] = rest; break;
                case "K": tables.Compatibility[cp] = rest; break;
                case "C": tables.CombiningClass[cp] = (byte)rest[0]; break;
                case "P": tables.Composites[((long)cp << 21) | (uint)rest[0]] = rest[1]; break;
                default: throw new InvalidDataException($"UnicodeNormalizationData: unknown record kind '{fields[0]}' in line '{line}'.");
            }
        }
        return tables;
    }
}
