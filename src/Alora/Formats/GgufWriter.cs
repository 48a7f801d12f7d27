using System.Text;

namespace Alora.Formats;

/// <summary>A tensor to write into a GGUF file: row-major shape and raw bytes of the given ggml type.</summary>
public sealed record GgufTensorToWrite(string Name, long[] Shape, GgmlType Type, ReadOnlyMemory<byte> Data)
{
    public static GgufTensorToWrite FromFloats(string name, long[] shape, float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return new GgufTensorToWrite(name, shape, GgmlType.F32, bytes);
    }
}

/// <summary>
/// Writes GGUF v3: metadata (strings, integers, floats, bools and arrays of them) and tensors, aligned to
/// general.alignment (32). Written to a temporary file and renamed into place.
/// </summary>
public static class GgufWriter
{
    private const int Alignment = 32;

    /// <param name="metadata">Values: string, bool, byte, sbyte, short, ushort, int, uint, long, ulong, float, double, or arrays of those.</param>
    public static void Write(string path, IEnumerable<KeyValuePair<string, object>> metadata, IEnumerable<GgufTensorToWrite> tensors)
    {
        var kvs = metadata.ToList();
        var tensorList = tensors.ToList();
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(0x46554747u);
            w.Write(3u);
            w.Write((ulong)tensorList.Count);
            w.Write((ulong)kvs.Count);
            foreach (var (key, value) in kvs)
            {
                WriteString(w, key);
                WriteValue(w, key, value);
            }
            long offset = 0;
            foreach (var t in tensorList)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Shape.Length);
                foreach (long d in t.Shape.Reverse()) w.Write((ulong)d);   // ggml order: innermost first
                w.Write((uint)t.Type);
                w.Write((ulong)offset);
                offset = Align(offset + t.Data.Length);
            }
            w.Flush();
            Pad(stream);
            foreach (var t in tensorList)
            {
                stream.Write(t.Data.Span);
                Pad(stream);
            }
        });
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream stream)
    {
        long padding = Align(stream.Position) - stream.Position;
        for (long i = 0; i < padding; i++) stream.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static uint TypeCode(string key, Type type) => type switch
    {
        _ when type == typeof(byte) => 0,
        _ when type == typeof(sbyte) => 1,
        _ when type == typeof(ushort) => 2,
        _ when type == typeof(short) => 3,
        _ when type == typeof(uint) => 4,
        _ when type == typeof(int) => 5,
        _ when type == typeof(float) => 6,
        _ when type == typeof(bool) => 7,
        _ when type == typeof(string) => 8,
        _ when type == typeof(ulong) => 10,
        _ when type == typeof(long) => 11,
        _ when type == typeof(double) => 12,
        _ => throw new ArgumentException($"GGUF metadata '{key}': values of type {type.Name} cannot be written"),
    };

    private static void WriteValue(BinaryWriter w, string key, object value)
    {
        if (value is Array array)
        {
            w.Write(9u);
            var elementType = array.GetType().GetElementType()!;
            w.Write(TypeCode(key, elementType));
            w.Write((ulong)array.Length);
            foreach (var item in array) WriteScalar(w, item!);
            return;
        }
        w.Write(TypeCode(key, value.GetType()));
        WriteScalar(w, value);
    }

    private static void WriteScalar(BinaryWriter w, object value)
    {
        switch (value)
        {
            case byte v: w.Write(v); break;
            case sbyte v: w.Write(v); break;
            case ushort v: w.Write(v); break;
            case short v: w.Write(v); break;
            case uint v: w.Write(v); break;
            case int v: w.Write(v); break;
            case float v: w.Write(v); break;
            case bool v: w.Write((byte)(v ? 1 : 0)); break;
            case string v: WriteString(w, v); break;
            case ulong v: w.Write(v); break;
            case long v: w.Write(v); break;
            case double v: w.Write(v); break;
            default: throw new ArgumentException($"GGUF metadata value of type {value.GetType().Name} cannot be written");
        }
    }
}
