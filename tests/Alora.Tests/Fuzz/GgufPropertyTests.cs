using System.Text;
using Alora.Formats;
using CsCheck;

namespace Alora.Tests.Fuzz;

/// <summary>
/// GGUF files built from CsCheck-generated parts: metadata of every value type (arrays and arrays of arrays
/// included), tensor infos of several ggml types and shapes, any power-of-two alignment. A well-formed file reads
/// back exactly (every value, every tensor's dimensions, type, offset and data); cut anywhere or with a count or
/// length field replaced by a lie, it is refused with a ModelFormatException that names the file.
/// </summary>
public sealed class GgufPropertyTests
{
    private enum VType : uint { U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12 }

    private sealed record Value(VType Type, object Data);
    private sealed record Tensor(string Name, long[] Dims, GgmlType Type, byte[] Data);
    private sealed record File(List<(string Key, Value Value)> Metadata, List<Tensor> Tensors, uint Alignment);

    private static readonly Gen<string> s_text = Gen.String[Gen.Char["abc.é€\u2581_"], 0, 12];

    private static Gen<Value> Scalar(VType type) => type switch
    {
        VType.U8 => Gen.Byte.Select(v => new Value(type, v)),
        VType.I8 => Gen.SByte.Select(v => new Value(type, v)),
        VType.U16 => Gen.UShort.Select(v => new Value(type, v)),
        VType.I16 => Gen.Short.Select(v => new Value(type, v)),
        VType.U32 => Gen.UInt.Select(v => new Value(type, v)),
        VType.I32 => Gen.Int.Select(v => new Value(type, v)),
        VType.F32 => Gen.Float.Select(v => new Value(type, v)),
        VType.Bool => Gen.Bool.Select(v => new Value(type, v)),
        VType.String => s_text.Select(v => new Value(type, v)),
        VType.U64 => Gen.ULong.Select(v => new Value(type, v)),
        VType.I64 => Gen.Long.Select(v => new Value(type, v)),
        _ => Gen.Double.Select(v => new Value(type, v)),
    };

    private static readonly VType[] s_scalarTypes = [.. Enum.GetValues<VType>().Where(t => t != VType.Array)];

    private static Gen<Value> AnyValue(int depth) => Gen.Int[0, s_scalarTypes.Length + (depth < 2 ? 1 : 0)].SelectMany(pick =>
        pick < s_scalarTypes.Length ? Scalar(s_scalarTypes[pick])
        : pick == s_scalarTypes.Length ? Gen.Int[0, s_scalarTypes.Length - 1].SelectMany(e => Scalar(s_scalarTypes[e]).Array[0, 6]).Select(items => new Value(VType.Array, items))
        : AnyValue(depth + 1).Where(v => v.Type == VType.Array).Array[0, 3].Select(items => new Value(VType.Array, items)));

    private static readonly Gen<Tensor> s_tensor = Gen.Select(s_text, Gen.Int[1, 3], Gen.Int[1, 6].Array[3], Gen.Int[0, 3], Gen.Byte.Array[4096],
        (name, rank, dims, type, noise) =>
        {
            var ggml = type switch { 0 => GgmlType.F32, 1 => GgmlType.F16, 2 => GgmlType.BF16, _ => GgmlType.Q8_0 };
            long[] d = [.. dims.Take(rank).Select(x => (long)x)];
            if (ggml == GgmlType.Q8_0) d[0] = 32 * d[0];
            long elements = d.Aggregate(1L, (a, b) => a * b);
            long bytes = ggml switch { GgmlType.F32 => elements * 4, GgmlType.Q8_0 => elements / 32 * 34, _ => elements * 2 };
            var data = new byte[bytes];
            for (int i = 0; i < data.Length; i++) data[i] = noise[i % noise.Length];
            if (ggml == GgmlType.F32) for (int i = 3; i < data.Length; i += 4) data[i] &= 0x3F;   // finite floats compare equal
            return new Tensor("t." + name, d, ggml, data);
        });

    private static readonly Gen<File> s_file = Gen.Select(
        Gen.Select(s_text, AnyValue(0)).Array[0, 8], s_tensor.Array[0, 4], Gen.Int[0, 7],
        (kvs, tensors, alignmentLog) => new File(
            [.. kvs.Select((kv, i) => ($"k{i}.{kv.Item1}", kv.Item2))],
            [.. tensors.Select((t, i) => t with { Name = $"{t.Name}.{i}" })],
            1u << alignmentLog));

    [Fact]
    public void WellFormedFilesReadBackExactly()
    {
        using var temp = new TempFolder();
        Seeded.ForEach(s_file, 150, file =>
        {
            string path = temp.File("p.gguf");
            System.IO.File.WriteAllBytes(path, Build(file));
            using var gguf = GgufFile.Open(path);
            foreach (var (key, value) in file.Metadata) AssertSame(value, gguf.Metadata[key]);
            Assert.Equal((long)file.Alignment, gguf.GetInteger("general.alignment"));
            foreach (var tensor in file.Tensors)
            {
                var info = gguf.GetInfo(tensor.Name);
                Assert.Equal(tensor.Dims, info.Dimensions);
                Assert.Equal(tensor.Type, info.Type);
                Assert.Equal(0, info.Offset % file.Alignment);
                unsafe { Assert.True(new ReadOnlySpan<byte>(gguf.DataPointer(info), tensor.Data.Length).SequenceEqual(tensor.Data)); }
                Assert.Equal(info.ElementCount, gguf.ReadFloats(tensor.Name).Length);
            }
        });
    }

    [Fact]
    public void CutOrLyingFilesAreRefusedNamingTheFile()
    {
        using var temp = new TempFolder();
        var lies = new ulong[] { ulong.MaxValue, long.MaxValue, (ulong)int.MaxValue + 1, 1UL << 40, 0xFFFFFFFF };
        Seeded.ForEach(Gen.Select(s_file, Gen.Double[0, 1], Gen.Int[0, 4], Gen.Bool), 150, c =>
        {
            var (file, where, lie, cut) = c;
            var bytes = Build(file);
            string path = temp.File("lie.gguf");
            int at = (int)(where * (bytes.Length - 8));
            if (cut) bytes = bytes[..at];
            else BitConverter.GetBytes(lies[lie]).CopyTo(bytes, at);
            System.IO.File.WriteAllBytes(path, bytes);
            try
            {
                using var gguf = GgufFile.Open(path);
                foreach (var info in gguf.TensorOrder)
                    if (GgufFile.TensorByteCount(info) >= 0) gguf.ReadFloats(info.Name);
            }
            catch (ModelFormatException e)
            {
                Assert.Contains(path, e.Message, StringComparison.Ordinal);
            }
        });
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(48u)]
    public void AnAlignmentThatIsNotAPowerOfTwoIsRefused(uint alignment)
    {
        using var temp = new TempFolder();
        string path = temp.File("a.gguf");
        System.IO.File.WriteAllBytes(path, Build(new File([], [], alignment)));
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Open(path));
        Assert.Contains("general.alignment", e.Message, StringComparison.Ordinal);
    }

    private static void AssertSame(Value expected, object actual)
    {
        switch (expected.Type)
        {
            case VType.Array:
                var items = (Value[])expected.Data;
                var array = (Array)actual;
                Assert.Equal(items.Length, array.Length);
                for (int i = 0; i < items.Length; i++) AssertSame(items[i], array.GetValue(i)!);
                break;
            case VType.F32:
                Assert.Equal(BitConverter.SingleToInt32Bits((float)expected.Data), BitConverter.SingleToInt32Bits((float)actual));
                break;
            case VType.F64:
                Assert.Equal(BitConverter.DoubleToInt64Bits((double)expected.Data), BitConverter.DoubleToInt64Bits((double)actual));
                break;
            default:
                Assert.Equal(expected.Data, actual);
                break;
        }
    }

    // ---- a GGUF v3 writer of its own (the library's writer fixes alignment at 32) ----

    private static byte[] Build(File file)
    {
        using var stream = new MemoryStream();
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(0x46554747u);
        w.Write(3u);
        w.Write((ulong)file.Tensors.Count);
        w.Write((ulong)file.Metadata.Count + 1);
        WriteString(w, "general.alignment");
        w.Write((uint)VType.U32);
        w.Write(file.Alignment);
        foreach (var (key, value) in file.Metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        long offset = 0;
        long alignment = Math.Max(1u, file.Alignment);
        foreach (var t in file.Tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = (offset + t.Data.Length + alignment - 1) / alignment * alignment;
        }
        w.Flush();
        Pad(stream, alignment);
        foreach (var t in file.Tensors)
        {
            stream.Write(t.Data);
            Pad(stream, alignment);
        }
        return stream.ToArray();
    }

    private static void Pad(MemoryStream stream, long alignment)
    {
        while (stream.Length % alignment != 0) stream.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, Value value)
    {
        switch (value.Type)
        {
            case VType.U8: w.Write((byte)value.Data); break;
            case VType.I8: w.Write((sbyte)value.Data); break;
            case VType.U16: w.Write((ushort)value.Data); break;
            case VType.I16: w.Write((short)value.Data); break;
            case VType.U32: w.Write((uint)value.Data); break;
            case VType.I32: w.Write((int)value.Data); break;
            case VType.F32: w.Write((float)value.Data); break;
            case VType.Bool: w.Write((bool)value.Data ? (byte)1 : (byte)0); break;
            case VType.String: WriteString(w, (string)value.Data); break;
            case VType.U64: w.Write((ulong)value.Data); break;
            case VType.I64: w.Write((long)value.Data); break;
            case VType.F64: w.Write((double)value.Data); break;
            case VType.Array:
                var items = (Value[])value.Data;
                w.Write((uint)(items.Length > 0 ? items[0].Type : VType.U8));
                w.Write((ulong)items.Length);
                foreach (var item in items) WriteValue(w, item);
                break;
        }
    }
}
