using System.Text;
using CsCheck;

namespace Alora.Tests.Fuzz;

/// <summary>
/// CsCheck generators of hostile variants of a real file: bit flips, interesting bytes and integers written over
/// length and offset fields, truncations, deleted and duplicated ranges, a slice repeated hundreds of times (deep
/// nesting), and for text formats dictionary tokens spliced in and numbers swapped for extreme ones. A few
/// (1 to 6) are stacked on one seed; positions land in the structured head of a binary file three times in four.
/// </summary>
public static class Mutations
{
    private enum Kind { FlipBit, SetByte, Int32, Int64, Truncate, Delete, Duplicate, Repeat, InsertToken, InsertBytes, Number }

    private sealed record Op(Kind Kind, double Where, double Where2, bool Hot, int Length, int Pick, ulong Random);

    private static readonly byte[] s_bytes = [0, 1, 0x7F, 0x80, 0xFF, (byte)'"', (byte)'{', (byte)'[', (byte)'\\', (byte)'-', (byte)'9', 0xC3, 0xED, 0xF4];

    private static readonly string[] s_numbers =
    [
        "0", "-1", "-100", "1e309", "-1e309", "1.5", "2147483647", "2147483648", "-2147483649", "4294967296",
        "9223372036854775807", "9223372036854775808", "18446744073709551616", "100000000", "1000000000000", "NaN", "1e-400",
    ];

    private static long[] InterestingIntegers(long length) =>
    [
        0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, int.MaxValue, int.MinValue, uint.MaxValue, 1L << 32, 1L << 40, 1L << 62,
        long.MaxValue, long.MinValue, length, length + 1, length - 1, length * 2, length / 2,
    ];

    private static readonly Gen<Op> s_op = Gen.Select(
        Gen.Frequency((3, Gen.Const(Kind.FlipBit)), (3, Gen.Const(Kind.SetByte)), (3, Gen.Const(Kind.Int32)), (3, Gen.Const(Kind.Int64)),
            (1, Gen.Const(Kind.Truncate)), (2, Gen.Const(Kind.Delete)), (2, Gen.Const(Kind.Duplicate)), (1, Gen.Const(Kind.Repeat)),
            (4, Gen.Const(Kind.InsertToken)), (1, Gen.Const(Kind.InsertBytes)), (3, Gen.Const(Kind.Number))),
        Gen.Double[0, 1], Gen.Double[0, 1], Gen.Int[0, 3], Gen.Int[1, 64], Gen.Int[0, 1 << 20], Gen.ULong,
        (kind, where, where2, hot, length, pick, random) => new Op(kind, where, where2, hot != 0, length, pick, random));

    /// <summary>Seeds with 1 to 6 stacked mutations each.</summary>
    public static Gen<byte[]> Of(IReadOnlyList<byte[]> seeds, int hotBytes, IReadOnlyList<string> dictionary, int maxOperations = 6)
        => Gen.Select(Gen.Int[0, seeds.Count - 1], s_op.Array[1, maxOperations], (seed, ops) => Apply(seeds[seed], ops, hotBytes, dictionary));

    private static byte[] Apply(byte[] seed, Op[] ops, int hotBytes, IReadOnlyList<string> dictionary)
    {
        var bytes = new List<byte>(seed);
        foreach (var op in ops) Apply(bytes, op, hotBytes, dictionary);
        return [.. bytes];
    }

    private static void Apply(List<byte> b, Op op, int hotBytes, IReadOnlyList<string> dictionary)
    {
        int span = op.Hot && hotBytes > 0 ? Math.Min(hotBytes, b.Count) : b.Count;
        int at = (int)(op.Where * span);
        int at2 = (int)(op.Where2 * b.Count);
        var integers = InterestingIntegers(b.Count);
        switch (op.Kind)
        {
            case Kind.FlipBit when b.Count > 0:
                b[Math.Min(at, b.Count - 1)] ^= (byte)(1 << (op.Pick % 8));
                break;
            case Kind.SetByte when b.Count > 0:
                b[Math.Min(at, b.Count - 1)] = s_bytes[op.Pick % s_bytes.Length];
                break;
            case Kind.Int32:
                Overwrite(b, at, BitConverter.GetBytes((int)integers[op.Pick % integers.Length]));
                break;
            case Kind.Int64:
                Overwrite(b, at, BitConverter.GetBytes(integers[op.Pick % integers.Length]));
                break;
            case Kind.Truncate:
                b.RemoveRange(at, b.Count - at);
                break;
            case Kind.Delete:
                b.RemoveRange(at, Math.Min(op.Length, b.Count - at));
                break;
            case Kind.Duplicate:
            {
                int length = Math.Min(op.Length * 4, b.Count - at2);
                b.InsertRange(at, b.GetRange(at2, length));
                break;
            }
            case Kind.Repeat:
            {
                int length = Math.Min(1 + op.Length % 16, b.Count - at);
                var slice = b.GetRange(at, length);
                int times = 50 + op.Pick % 2000;
                for (int i = 0; i < times && b.Count < (8 << 20); i++) b.InsertRange(at, slice);
                break;
            }
            case Kind.InsertToken when dictionary.Count > 0:
                b.InsertRange(at, Latin1OrUtf8(dictionary[op.Pick % dictionary.Count]));
                break;
            case Kind.InsertBytes:
            {
                var random = new Random((int)op.Random);
                var inserted = new byte[op.Length];
                random.NextBytes(inserted);
                b.InsertRange(at, inserted);
                break;
            }
            case Kind.Number:
            {
                // The next run of digits at or after the position becomes an extreme number.
                int start = at;
                while (start < b.Count && !char.IsAsciiDigit((char)b[start])) start++;
                if (start == b.Count) break;
                int end = start;
                while (end < b.Count && (char.IsAsciiDigit((char)b[end]) || b[end] is (byte)'.' or (byte)'e' or (byte)'E')) end++;
                b.RemoveRange(start, end - start);
                b.InsertRange(start, Encoding.ASCII.GetBytes(s_numbers[op.Pick % s_numbers.Length]));
                break;
            }
        }
    }

    private static void Overwrite(List<byte> b, int at, byte[] value)
    {
        for (int i = 0; i < value.Length && at + i < b.Count; i++) b[at + i] = value[i];
    }

    // Dictionary tokens with characters above U+00FF are UTF-8; those within it stand for raw bytes (so "\xFF" is
    // the invalid byte 0xFF, not U+00FF's two UTF-8 bytes).
    private static byte[] Latin1OrUtf8(string token)
        => token.All(c => c <= '\u00FF') ? Encoding.Latin1.GetBytes(token) : Encoding.UTF8.GetBytes(token);
}

/// <summary>Runs a CsCheck generator for a fixed number of inputs, each from its own seeded PCG (stream from the
/// caller's name, seed = the input's index), so every run of CI draws the same inputs.</summary>
public static class Seeded
{
    public static void ForEach<T>(Gen<T> gen, int count, Action<T> check, [System.Runtime.CompilerServices.CallerMemberName] string stream = "")
    {
        uint streamId = FuzzHarnessTests.Fnv(stream);
        for (int i = 0; i < count; i++)
        {
            var value = gen.Generate(new PCG(streamId, (ulong)i), null!, out _);
            try { check(value); }
            catch (Exception e) { throw new InvalidOperationException($"input {i} (PCG stream {streamId}, seed {i}): {value}", e); }
        }
    }
}

/// <summary>Well-formed JSON with one to three values (anywhere in the tree) replaced by hostile ones: extreme numbers,
/// wrong types, control characters, long strings, deep nesting, huge arrays.</summary>
public static class JsonMutations
{
    private static System.Text.Json.Nodes.JsonNode?[] Values() =>
    [
        null, true, false, 0, -1, 1.5, 1e308, -1e308, long.MaxValue, long.MinValue, int.MaxValue, 100000000, 3.0, "", "\u0000\u001f\ud7ff\ufffd",
        new string('x', 100_000), "stories", "qa", "story", "user", "assistant", "system", "tool", "{{ raise_exception('x') }}", "<s></s><unk>",
        new System.Text.Json.Nodes.JsonArray(), new System.Text.Json.Nodes.JsonObject(),
        System.Text.Json.Nodes.JsonNode.Parse(new string('[', 60) + new string(']', 60)),
        new System.Text.Json.Nodes.JsonArray([.. Enumerable.Range(0, 5000).Select(i => (System.Text.Json.Nodes.JsonNode?)i)]),
        new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["role"] = "user" }),
        new System.Text.Json.Nodes.JsonObject { ["role"] = "user", ["content"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["type"] = "text", ["text"] = "hi" }) },
        new System.Text.Json.Nodes.JsonObject { ["1"] = 100, ["-5"] = -100 },
        "(a|aa)*b{1000000}", "[\\x00-\\xff]{99999999}", "root ::= root", "#/definitions/x",
        new System.Text.Json.Nodes.JsonObject { ["$ref"] = "#" },
        new System.Text.Json.Nodes.JsonObject { ["type"] = "string", ["minLength"] = 100000000 },
        new System.Text.Json.Nodes.JsonObject { ["type"] = "array", ["minItems"] = 1000000, ["items"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "integer" } },
        new System.Text.Json.Nodes.JsonObject { ["anyOf"] = new System.Text.Json.Nodes.JsonArray(new System.Text.Json.Nodes.JsonObject { ["$ref"] = "#" }) },
    ];

    public static Gen<byte[]> Of(string seed) => Gen.Select(Gen.Int[0, 1 << 20].Array[1, 3], Gen.Int[0, 1 << 20].Array[3], (picks, values) =>
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(seed)!;
        var pool = Values();
        for (int k = 0; k < picks.Length; k++)
        {
            var slots = new List<(System.Text.Json.Nodes.JsonNode Parent, string? Key, int Index)>();
            Collect(root, slots);
            var (parent, key, index) = slots[picks[k] % slots.Count];
            var value = pool[values[k] % pool.Length]?.DeepClone();
            if (parent is System.Text.Json.Nodes.JsonObject o) o[key!] = value;
            else ((System.Text.Json.Nodes.JsonArray)parent)[index] = value;
        }
        return Encoding.UTF8.GetBytes(root.ToJsonString());
    });

    private static void Collect(System.Text.Json.Nodes.JsonNode node, List<(System.Text.Json.Nodes.JsonNode, string?, int)> slots)
    {
        if (node is System.Text.Json.Nodes.JsonObject o)
            foreach (var (key, child) in o.ToList())
            {
                slots.Add((o, key, -1));
                if (child is not null) Collect(child, slots);
            }
        else if (node is System.Text.Json.Nodes.JsonArray a)
            for (int i = 0; i < a.Count; i++)
            {
                slots.Add((a, null, i));
                if (a[i] is { } child) Collect(child, slots);
            }
    }
}
