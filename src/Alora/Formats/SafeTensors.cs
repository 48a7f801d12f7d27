using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using Alora.Tensors;

namespace Alora.Formats;

/// <summary>Element types of the safetensors format (the names its header uses).</summary>
public enum SafeTensorDType { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 }

/// <summary>One tensor entry of a safetensors header. Offsets are relative to the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The dtype as a weight dtype, or a clear error for those the kernels do not take.</summary>
    public DType ToWeightDType(string file) => DType switch
    {
        SafeTensorDType.F32 => Tensors.DType.F32,
        SafeTensorDType.BF16 => Tensors.DType.BF16,
        SafeTensorDType.F16 => Tensors.DType.F16,
        _ => throw new ModelFormatException($"{file}: tensor '{Name}' has dtype {DType}; Alora reads weights as F32, BF16 or F16"),
    };
}

/// <summary>
/// A memory-mapped .safetensors file. The header is validated completely at open: every entry's byte range
/// must match its dtype and shape, the ranges must tile the data section without gaps or overlaps, and the
/// file must be long enough to hold them.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* pointer,
        long dataStart, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _pointer = pointer;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file not found: {path}", path);
        long fileLength = FileLength(path);
        if (fileLength < 8)
            throw new ModelFormatException($"{path}: truncated safetensors file: {fileLength} bytes, expected at least an 8-byte header length");

        long headerLength;
        byte[] headerBytes;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            headerLength = BitConverter.ToInt64(lengthBytes);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes)
                throw new ModelFormatException($"{path}: header length {headerLength} is not plausible (expected 1..{MaxHeaderBytes}); is this a safetensors file?");
            if (8 + headerLength > fileLength)
                throw new ModelFormatException($"{path}: truncated safetensors file: header says {headerLength} header bytes but the file has only {fileLength - 8} after the length");
            headerBytes = new byte[headerLength];
            stream.ReadExactly(headerBytes);
        }

        long dataStart = 8 + headerLength;
        long dataLength = fileLength - dataStart;
        var (tensors, metadata) = ParseHeader(path, headerBytes, dataLength);

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* pointer = null;
        if (fileLength > 0)
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            pointer += view.PointerOffset;
        }
        return new SafeTensorsFile(path, map, view, pointer, dataStart, tensors, metadata);
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] headerBytes, long dataLength)
    {
        // System.Text.Json checks UTF-8 only when a string is read (a name with a stray byte would throw
        // InvalidOperationException deep in the parse), so the whole header is checked first.
        long bad = Utf8Text.FirstInvalidByte(headerBytes);
        if (bad >= 0)
            throw new ModelFormatException($"{path}: the safetensors header is not valid UTF-8 (first bad byte 0x{headerBytes[Math.Min(bad, headerBytes.Length - 1)]:X2} at header offset {bad}, file offset {8 + bad})");
        if (Utf8Text.DescribeInvalid(headerBytes, baseOffset: 8) is { } lone)
            throw new ModelFormatException($"{path}: the safetensors header cannot be read: {lone} (file offset)");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: the safetensors header is not valid JSON: {e.Message}", e);
        }
        using var _ = document;
        if (document.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: the safetensors header must be a JSON object, found {document.RootElement.ValueKind}");

        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in document.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                foreach (var m in property.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                continue;
            }
            tensors[property.Name] = ParseEntry(path, property.Name, property.Value);
        }

        // The byte ranges must tile [0, dataLength') exactly, and lie inside the file.
        long expectedBegin = 0;
        foreach (var info in tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            long bytes = info.ElementCount * ElementSize(info.DType);
            if (info.End - info.Begin != bytes)
                throw new ModelFormatException(
                    $"{path}: tensor '{info.Name}' data_offsets [{info.Begin}, {info.End}] span {info.End - info.Begin} bytes, but {info.DType} {FormatShape(info.Shape)} needs {bytes}");
            if (info.Begin != expectedBegin)
                throw new ModelFormatException(
                    $"{path}: tensor '{info.Name}' data_offsets begin at {info.Begin}, expected {expectedBegin} (tensor data must be contiguous, without gaps or overlaps)");
            expectedBegin = info.End;
        }
        if (expectedBegin > dataLength)
            throw new ModelFormatException(
                $"{path}: truncated safetensors file: tensor data needs {expectedBegin} bytes but the file holds {dataLength} after the header");
        return (tensors, metadata);
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement entry)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: header entry '{name}' must be an object with dtype, shape and data_offsets");
        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new ModelFormatException($"{path}: tensor '{name}' has no dtype string");
        string dtypeName = dtypeElement.GetString()!;
        if (!Enum.TryParse<SafeTensorDType>(dtypeName, ignoreCase: false, out var dtype) || int.TryParse(dtypeName, out _))
            throw new ModelFormatException(
                $"{path}: tensor '{name}' has unknown dtype '{dtypeName}' (expected one of {string.Join(", ", Enum.GetNames<SafeTensorDType>())})");
        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException($"{path}: tensor '{name}' has no shape array");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out shape[i]) || shape[i] < 0)
                throw new ModelFormatException($"{path}: tensor '{name}' has an invalid shape {shapeElement.GetRawText()}");
            i++;
        }
        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw new ModelFormatException($"{path}: tensor '{name}' needs data_offsets [begin, end]");
        long begin = offsets[0].TryGetInt64(out var b) ? b : -1;
        long end = offsets[1].TryGetInt64(out var e) ? e : -1;
        if (begin < 0 || end < begin)
            throw new ModelFormatException($"{path}: tensor '{name}' has invalid data_offsets {offsets.GetRawText()} (expected 0 <= begin <= end)");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    /// <summary>The length of the file itself, following symbolic links (Hugging Face cache snapshots are links into blobs/).</summary>
    internal static long FileLength(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
        return stream.Length;
    }

    public static int ElementSize(SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.BOOL or SafeTensorDType.U8 or SafeTensorDType.I8 or SafeTensorDType.F8_E5M2 or SafeTensorDType.F8_E4M3 => 1,
        SafeTensorDType.I16 or SafeTensorDType.U16 or SafeTensorDType.F16 or SafeTensorDType.BF16 => 2,
        SafeTensorDType.I32 or SafeTensorDType.U32 or SafeTensorDType.F32 => 4,
        _ => 8,
    };

    internal static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>Pointer to a tensor's bytes inside the map. Valid while this file is open.</summary>
    public byte* DataPointer(SafeTensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return _pointer + _dataStart + info.Begin;
    }

    public ReadOnlySpan<byte> Bytes(SafeTensorInfo info) => new(DataPointer(info), checked((int)(info.End - info.Begin)));

    /// <summary>Reads a tensor as f32 (converting bf16/f16), for small tensors and tests.</summary>
    public float[] ReadFloats(string name)
    {
        if (!Tensors.TryGetValue(name, out var info))
            throw new ModelFormatException($"{Path}: tensor '{name}' is missing");
        var result = new float[info.ElementCount];
        var dtype = info.ToWeightDType(Path);
        byte* p = DataPointer(info);
        for (long i = 0; i < result.LongLength; i++)
        {
            result[i] = dtype switch
            {
                DType.F32 => ((float*)p)[i],
                DType.BF16 => Half16.BFloat16ToSingle(((ushort*)p)[i]),
                _ => Half16.HalfToSingle(((ushort*)p)[i]),
            };
        }
        return result;
    }

    public void Dispose()
    {
        if (_view is not null && _pointer != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _pointer = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}

/// <summary>A tensor to write: name, dtype, shape and its raw little-endian bytes.</summary>
public sealed record SafeTensorToWrite(string Name, SafeTensorDType DType, long[] Shape, ReadOnlyMemory<byte> Data)
{
    public static SafeTensorToWrite FromFloats(string name, long[] shape, float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return new SafeTensorToWrite(name, SafeTensorDType.F32, shape, bytes);
    }
}

public static class SafeTensorsWriter
{
    /// <summary>
    /// Writes tensors (sorted by name, as the reference implementation does) to a temporary file next to
    /// <paramref name="path"/>, then renames it into place, so a failure never leaves a half-written file.
    /// </summary>
    public static void Write(string path, IEnumerable<SafeTensorToWrite> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var ordered = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        using var headerStream = new MemoryStream();
        using (var json = new Utf8JsonWriter(headerStream))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var tensor in ordered)
            {
                long expected = tensor.Shape.Aggregate(1L, (a, b) => a * b) * SafeTensorsFile.ElementSize(tensor.DType);
                if (expected != tensor.Data.Length)
                    throw new ArgumentException($"tensor '{tensor.Name}': {tensor.DType} {SafeTensorsFile.FormatShape(tensor.Shape)} needs {expected} bytes, got {tensor.Data.Length}");
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.DType.ToString());
                json.WriteStartArray("shape");
                foreach (long d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.Data.Length;
            }
            json.WriteEndObject();
        }
        // Pad the header with spaces to a multiple of 8 so the data section is aligned.
        var header = headerStream.ToArray().ToList();
        while ((header.Count + 8) % 8 != 0) header.Add((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((long)header.Count));
            stream.Write(header.ToArray());
            foreach (var tensor in ordered) stream.Write(tensor.Data.Span);
        });
    }
}
