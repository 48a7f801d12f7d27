using System.IO.MemoryMappedFiles;
using System.Text;
using Alora.Tensors;

namespace Alora.Formats;

/// <summary>ggml tensor types, with the numbers the GGUF format stores.</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
}

/// <summary>A GGUF tensor entry. <see cref="Dimensions"/> is in ggml order: ne[0] is the innermost (contiguous) axis.</summary>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, GgmlType Type, long Offset)
{
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);
    /// <summary>The shape in row-major (PyTorch) order: the ggml dimensions reversed.</summary>
    public long[] Shape => Dimensions.Reverse().ToArray();
}

/// <summary>
/// A memory-mapped GGUF v2/v3 file: metadata key/values and tensor infos. Tensors of type F32, F16, BF16 and
/// ggml's block quantizations Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, Q8_K are views into the map (the
/// kernels read the blocks in place); other types get a clear error that names the tensor.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    private const uint Magic = 0x46554747; // "GGUF" little-endian
    private const long MaxAlignment = 1L << 30;
    private const int MaxArrayNesting = 8;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;
    private readonly long _length;
    private readonly long _dataStart;

    private GgufFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* pointer, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _pointer = pointer;
        _length = length;
        var reader = new Reader(path, pointer, length);
        uint magic = reader.U32();
        if (magic != Magic) throw new ModelFormatException($"{path}: not a GGUF file (magic 0x{magic:X8}, expected 0x{Magic:X8} \"GGUF\")");
        Version = reader.U32();
        if (Version is < 2 or > 3) throw new ModelFormatException($"{path}: GGUF version {Version} is not supported (expected 2 or 3)");
        // Every key/value takes at least 12 bytes and every tensor info 24: a count the file cannot hold is an
        // error before anything is allocated for it.
        ulong claimedTensors = reader.U64(), claimedKeys = reader.U64();
        if (claimedTensors > (ulong)(length / 24))
            throw new ModelFormatException($"{path}: the header claims {claimedTensors} tensors (offset 8), more than a {length}-byte file can describe");
        if (claimedKeys > (ulong)(length / 12))
            throw new ModelFormatException($"{path}: the header claims {claimedKeys} metadata keys (offset 16), more than a {length}-byte file can hold");
        long tensorCount = (long)claimedTensors;
        long kvCount = (long)claimedKeys;

        var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
        for (long i = 0; i < kvCount; i++)
        {
            string key = reader.String();
            var type = (ValueType)reader.U32();
            metadata[key] = reader.Value(type, key);
        }
        Metadata = metadata;

        var tensors = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        var ordered = new List<GgufTensorInfo>();
        for (long i = 0; i < tensorCount; i++)
        {
            long infoStart = reader.Position;
            string name = reader.String();
            uint dimCount = reader.U32();
            if (dimCount > 8) throw new ModelFormatException($"{path}: tensor '{name}' (info at offset {infoStart}) claims {dimCount} dimensions (at most 8 expected)");
            var dims = new long[dimCount];
            long elements = 1;
            for (int d = 0; d < dimCount; d++)
            {
                ulong dim = reader.U64();
                // No ggml type packs more than 8 elements in a byte (the 1.5-bit types come closest), so a tensor of
                // more elements than 8 x the file's bytes cannot fit; the bound also keeps every size below in range.
                if (dim > (ulong)length * 8 || (dim != 0 && elements > length * 8 / (long)dim))
                    throw new ModelFormatException(
                        $"{path}: tensor '{name}' (info at offset {infoStart}) has dimension {d} = {dim}, more elements than a {length}-byte file can hold");
                elements *= (long)dim;
                dims[d] = (long)dim;
            }
            uint type = reader.U32();
            ulong offset = reader.U64();
            if (offset > (ulong)length)
                throw new ModelFormatException($"{path}: truncated GGUF file (or a corrupt tensor info at offset {infoStart}): tensor '{name}' has data offset {offset}, past the end of the {length}-byte file");
            var info = new GgufTensorInfo(name, dims, (GgmlType)type, (long)offset);
            tensors[name] = info;
            ordered.Add(info);
        }
        Tensors = tensors;
        TensorOrder = ordered;

        long alignment = GetInteger("general.alignment") ?? 32;
        if (alignment <= 0 || alignment > MaxAlignment || (alignment & (alignment - 1)) != 0)
            throw new ModelFormatException($"{path}: general.alignment = {alignment}, expected a power of two up to {MaxAlignment}");
        _dataStart = (reader.Position + alignment - 1) / alignment * alignment;

        foreach (var info in ordered)
        {
            if (info.Offset % alignment != 0)
                throw new ModelFormatException($"{path}: tensor '{info.Name}' has data offset {info.Offset}, not a multiple of the alignment {alignment}");
            long bytes = TensorByteCount(info);
            if (bytes >= 0 && _dataStart + info.Offset + bytes > length)
                throw new ModelFormatException(
                    $"{path}: truncated GGUF file: tensor '{info.Name}' needs bytes up to {_dataStart + info.Offset + bytes}, the file has {length}");
        }
    }

    public string Path { get; }
    public uint Version { get; }
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyDictionary<string, GgufTensorInfo> Tensors { get; }
    public IReadOnlyList<GgufTensorInfo> TensorOrder { get; }

    public static GgufFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"GGUF file not found: {path}", path);
        long length = SafeTensorsFile.FileLength(path);
        if (length < 24) throw new ModelFormatException($"{path}: truncated GGUF file ({length} bytes)");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        pointer += view.PointerOffset;
        try
        {
            return new GgufFile(path, map, view, pointer, length);
        }
        catch
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            map.Dispose();
            throw;
        }
    }

    // ---- metadata accessors ----

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) ? v as string ?? throw TypeError(key, "a string", v) : null;

    public string[]? GetStringArray(string key) => Metadata.TryGetValue(key, out var v) ? v as string[] ?? throw TypeError(key, "an array of strings", v) : null;

    public float[]? GetFloatArray(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) return null;
        return v switch
        {
            float[] f => f,
            double[] d => d.Select(x => (float)x).ToArray(),
            _ => throw TypeError(key, "an array of floats", v),
        };
    }

    public int[]? GetInt32Array(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) return null;
        return v switch
        {
            int[] a => a,
            uint[] a => a.Select((x, i) => x <= int.MaxValue ? (int)x : throw RangeError(key, i, x)).ToArray(),
            byte[] a => a.Select(x => (int)x).ToArray(),
            sbyte[] a => a.Select(x => (int)x).ToArray(),
            short[] a => a.Select(x => (int)x).ToArray(),
            ushort[] a => a.Select(x => (int)x).ToArray(),
            long[] a => a.Select((x, i) => x is >= int.MinValue and <= int.MaxValue ? (int)x : throw RangeError(key, i, x)).ToArray(),
            ulong[] a => a.Select((x, i) => x <= int.MaxValue ? (int)x : throw RangeError(key, i, x)).ToArray(),
            _ => throw TypeError(key, "an array of integers", v),
        };
    }

    private ModelFormatException RangeError(string key, int index, object value)
        => new($"{Path}: metadata '{key}'[{index}] = {value} does not fit a 32-bit integer");

    public long? GetInteger(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) return null;
        return v switch
        {
            byte x => x, sbyte x => x, short x => x, ushort x => x, int x => x, uint x => x, long x => x,
            ulong x => x <= long.MaxValue ? (long)x : throw new ModelFormatException($"{Path}: metadata '{key}' = {x} does not fit a 64-bit signed integer"),
            _ => throw TypeError(key, "an integer", v),
        };
    }

    public double? GetFloat(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) return null;
        return v switch { float x => x, double x => x, _ => GetInteger(key) };
    }

    public bool? GetBool(string key) => Metadata.TryGetValue(key, out var v) ? v as bool? ?? throw TypeError(key, "a bool", v) : null;

    private ModelFormatException TypeError(string key, string expected, object found)
        => new($"{Path}: metadata '{key}' should be {expected}, found {found.GetType().Name}");

    // ---- tensors ----

    /// <summary>The weight dtype of a ggml type, or null for a type Alora does not read.</summary>
    public static DType? ToDType(GgmlType type) => type switch
    {
        GgmlType.F32 => DType.F32,
        GgmlType.F16 => DType.F16,
        GgmlType.BF16 => DType.BF16,
        GgmlType.Q8_0 => DType.Q8_0,
        GgmlType.Q4_0 => DType.Q4_0,
        GgmlType.Q4_1 => DType.Q4_1,
        GgmlType.Q5_0 => DType.Q5_0,
        GgmlType.Q5_1 => DType.Q5_1,
        GgmlType.Q4_K => DType.Q4_K,
        GgmlType.Q5_K => DType.Q5_K,
        GgmlType.Q6_K => DType.Q6_K,
        GgmlType.Q8_K => DType.Q8_K,
        _ => null,
    };

    /// <summary>The ggml type of a weight dtype.</summary>
    public static GgmlType ToGgmlType(DType dtype) => dtype switch
    {
        DType.F32 => GgmlType.F32,
        DType.F16 => GgmlType.F16,
        DType.BF16 => GgmlType.BF16,
        DType.Q8_0 => GgmlType.Q8_0,
        DType.Q4_0 => GgmlType.Q4_0,
        DType.Q4_1 => GgmlType.Q4_1,
        DType.Q5_0 => GgmlType.Q5_0,
        DType.Q5_1 => GgmlType.Q5_1,
        DType.Q4_K => GgmlType.Q4_K,
        DType.Q5_K => GgmlType.Q5_K,
        DType.Q6_K => GgmlType.Q6_K,
        DType.Q8_K => GgmlType.Q8_K,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>
    /// Bytes a tensor occupies, or -1 for a type this reader cannot size (it fails at use). A quantized tensor whose
    /// rows (ne[0]) are not whole blocks is -2 (it fails at use, naming the tensor).
    /// </summary>
    public static long TensorByteCount(GgufTensorInfo info)
    {
        if (ToDType(info.Type) is not DType dtype) return -1;
        long rowLength = info.Dimensions.Length == 0 ? 1 : info.Dimensions[0];
        if (rowLength % dtype.BlockLength() != 0) return -2;
        return dtype.ByteCount(info.ElementCount);
    }

    public GgufTensorInfo GetInfo(string name)
        => Tensors.TryGetValue(name, out var info) ? info
            : throw new ModelFormatException($"{Path}: tensor '{name}' is missing (wrong architecture, or an incomplete file?)");

    public byte* DataPointer(GgufTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return _pointer + _dataStart + info.Offset;
    }

    /// <summary>The tensor's dtype: every type Alora reads is used in place (quantized blocks included).</summary>
    public DType DirectDType(GgufTensorInfo info)
    {
        if (ToDType(info.Type) is not DType dtype) throw UnsupportedType(info);
        long rowLength = info.Dimensions.Length == 0 ? 1 : info.Dimensions[0];
        if (rowLength % dtype.BlockLength() != 0)
            throw new ModelFormatException(
                $"{Path}: tensor '{info.Name}' has type {info.Type} and rows of {rowLength} elements, not a whole number of {dtype.BlockLength()}-element blocks");
        return dtype;
    }

    private ModelFormatException UnsupportedType(GgufTensorInfo info)
    {
        string typeName = Enum.IsDefined(info.Type) ? info.Type.ToString() : $"unknown ggml type {(uint)info.Type}";
        return new ModelFormatException(
            $"{Path}: tensor '{info.Name}' has type {typeName}; Alora reads GGUF tensors of type F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and Q8_K (re-quantize or convert the file)");
    }

    /// <summary>Writes the tensor into <paramref name="destination"/> as f32 (any supported type; quantized blocks dequantized).</summary>
    public void ReadAsFloats(GgufTensorInfo info, float* destination)
    {
        var dtype = DirectDType(info);
        byte* source = DataPointer(info);
        long n = info.ElementCount;
        switch (dtype)
        {
            case DType.F32:
                Buffer.MemoryCopy(source, destination, n * 4, n * 4);
                break;
            case DType.F16:
                for (long i = 0; i < n; i++) destination[i] = Half16.HalfToSingle(((ushort*)source)[i]);
                break;
            case DType.BF16:
                for (long i = 0; i < n; i++) destination[i] = Half16.BFloat16ToSingle(((ushort*)source)[i]);
                break;
            default:
                QuantBlocks.Dequantize(destination, source, dtype, n);
                break;
        }
    }

    public float[] ReadFloats(string name)
    {
        var info = GetInfo(name);
        var result = new float[info.ElementCount];
        fixed (float* p = result) ReadAsFloats(info, p);
        return result;
    }

    public void Dispose()
    {
        if (_pointer != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _pointer = null;
        }
        _view.Dispose();
        _map.Dispose();
    }

    private enum ValueType : uint { U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12 }

    /// <summary>Bounds-checked little-endian reader over the mapped header.</summary>
    private struct Reader(string path, byte* start, long length)
    {
        public long Position;

        private byte* Take(long bytes)
        {
            if (bytes < 0 || Position + bytes > length)
                throw new ModelFormatException($"{path}: truncated GGUF header: needed {bytes} bytes at offset {Position}, the file has {length}");
            byte* p = start + Position;
            Position += bytes;
            return p;
        }

        public byte U8() => *Take(1);
        public uint U32() => *(uint*)Take(4);
        public ulong U64() => *(ulong*)Take(8);

        public string String()
        {
            ulong n = U64();
            if (n > int.MaxValue) throw new ModelFormatException($"{path}: GGUF string of {n} bytes at offset {Position - 8} is not plausible");
            return Encoding.UTF8.GetString(Take((long)n), (int)n);
        }

        public object Value(ValueType type, string key, int depth = 0) => type switch
        {
            ValueType.U8 => *Take(1),
            ValueType.I8 => *(sbyte*)Take(1),
            ValueType.U16 => *(ushort*)Take(2),
            ValueType.I16 => *(short*)Take(2),
            ValueType.U32 => *(uint*)Take(4),
            ValueType.I32 => *(int*)Take(4),
            ValueType.F32 => *(float*)Take(4),
            ValueType.Bool => *Take(1) != 0,
            ValueType.String => String(),
            ValueType.U64 => *(ulong*)Take(8),
            ValueType.I64 => *(long*)Take(8),
            ValueType.F64 => *(double*)Take(8),
            ValueType.Array => Array(key, depth),
            _ => throw new ModelFormatException($"{path}: metadata '{key}' has unknown value type {(uint)type}"),
        };

        private object Array(string key, int depth)
        {
            long start = Position;
            if (depth >= MaxArrayNesting)
                throw new ModelFormatException($"{path}: metadata array '{key}' at offset {start} is nested deeper than {MaxArrayNesting} levels");
            var elementType = (ValueType)U32();
            ulong count = U64();
            // The smallest encoding of one element: a string is at least its 8-byte length, a nested array its
            // 12-byte type and count. A count the rest of the file cannot hold fails before any allocation.
            long elementBytes = elementType switch
            {
                ValueType.U8 or ValueType.I8 or ValueType.Bool => 1,
                ValueType.U16 or ValueType.I16 => 2,
                ValueType.U32 or ValueType.I32 or ValueType.F32 => 4,
                ValueType.U64 or ValueType.I64 or ValueType.F64 or ValueType.String => 8,
                ValueType.Array => 12,
                _ => throw new ModelFormatException($"{path}: metadata array '{key}' at offset {start} has unknown element type {(uint)elementType}"),
            };
            if (count > (ulong)((length - Position) / elementBytes))
                throw new ModelFormatException(
                    $"{path}: metadata array '{key}' at offset {start} claims {count} elements of {elementType}, more than the {length - Position} bytes left in the file hold");
            int n = (int)count;
            switch (elementType)
            {
                case ValueType.String:
                    var strings = new string[n];
                    for (int i = 0; i < n; i++) strings[i] = String();
                    return strings;
                case ValueType.U8: return Copy<byte>(n);
                case ValueType.I8: return Copy<sbyte>(n);
                case ValueType.U16: return Copy<ushort>(n);
                case ValueType.I16: return Copy<short>(n);
                case ValueType.U32: return Copy<uint>(n);
                case ValueType.I32: return Copy<int>(n);
                case ValueType.F32: return Copy<float>(n);
                case ValueType.U64: return Copy<ulong>(n);
                case ValueType.I64: return Copy<long>(n);
                case ValueType.F64: return Copy<double>(n);
                case ValueType.Bool:
                    var bools = new bool[n];
                    for (int i = 0; i < n; i++) bools[i] = U8() != 0;
                    return bools;
                case ValueType.Array:
                    var nested = new object[n];
                    for (int i = 0; i < n; i++) nested[i] = Array(key, depth + 1);
                    return nested;
                default:
                    throw new ModelFormatException($"{path}: metadata array '{key}' has unknown element type {(uint)elementType}");
            }
        }

        private T[] Copy<T>(int n) where T : unmanaged
        {
            var result = new T[n];
            byte* p = Take((long)n * sizeof(T));
            fixed (T* r = result) Buffer.MemoryCopy(p, r, (long)n * sizeof(T), (long)n * sizeof(T));
            return result;
        }
    }
}
