using System.Text.Json;

namespace Alora.Formats;

/// <summary>
/// All the safetensors files of one checkpoint: a single model.safetensors, or the shards that
/// model.safetensors.index.json's weight_map names. Tensor lookups go to the shard that holds them.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, SafeTensorsFile> _byTensor;

    private SafeTensorsCheckpoint(string source, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> byTensor)
    {
        Source = source;
        _files = files;
        _byTensor = byTensor;
    }

    public string Source { get; }
    public IEnumerable<string> TensorNames => _byTensor.Keys;
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>Opens a .safetensors file, or a folder with model.safetensors or model.safetensors.index.json.</summary>
    public static SafeTensorsCheckpoint Open(string fileOrFolder)
    {
        if (File.Exists(fileOrFolder)) return FromFiles(fileOrFolder, [fileOrFolder]);
        if (!Directory.Exists(fileOrFolder))
            throw new FileNotFoundException($"no safetensors file or folder at {fileOrFolder}", fileOrFolder);

        string single = Path.Combine(fileOrFolder, "model.safetensors");
        string index = Path.Combine(fileOrFolder, "model.safetensors.index.json");
        if (File.Exists(index)) return FromIndex(index);
        if (File.Exists(single)) return FromFiles(fileOrFolder, [single]);
        var any = Directory.GetFiles(fileOrFolder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (any.Length == 0)
            throw new ModelFormatException($"{fileOrFolder}: no model.safetensors, model.safetensors.index.json or *.safetensors file in this folder");
        return FromFiles(fileOrFolder, any);
    }

    private static SafeTensorsCheckpoint FromIndex(string indexPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        byte[] bytes = File.ReadAllBytes(indexPath);
        if (Utf8Text.DescribeInvalid(bytes) is { } bad) throw new ModelFormatException($"{indexPath}: {bad}");
        JsonDocument document;
        try { document = JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new ModelFormatException($"{indexPath}: not valid JSON ({e.Message})", e); }
        using var _ = document;
        if (!document.RootElement.TryGetProperty("weight_map", out var weightMap) || weightMap.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{indexPath}: expected a \"weight_map\" object mapping tensor names to shard files");
        var shardOf = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in weightMap.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException($"{indexPath}: weight_map['{entry.Name}'] must be a file name, found {entry.Value.ValueKind}");
            shardOf[entry.Name] = entry.Value.GetString()!;
        }
        var shards = shardOf.Values.Distinct().Order(StringComparer.Ordinal).Select(s => Path.Combine(folder, s)).ToArray();
        var checkpoint = FromFiles(indexPath, shards);
        foreach (var (tensor, shard) in shardOf)
        {
            if (!checkpoint._byTensor.TryGetValue(tensor, out var file))
                throw new ModelFormatException($"{indexPath}: weight_map says tensor '{tensor}' is in {shard}, but no shard holds it");
            if (Path.GetFileName(file.Path) != shard)
                throw new ModelFormatException($"{indexPath}: weight_map says tensor '{tensor}' is in {shard}, but it is in {Path.GetFileName(file.Path)}");
        }
        return checkpoint;
    }

    private static SafeTensorsCheckpoint FromFiles(string source, string[] paths)
    {
        var files = new List<SafeTensorsFile>();
        var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (string path in paths)
            {
                if (!File.Exists(path)) throw new ModelFormatException($"{source}: shard {path} is missing");
                var file = SafeTensorsFile.Open(path);
                files.Add(file);
                foreach (var name in file.Tensors.Keys)
                {
                    if (byTensor.TryGetValue(name, out var other))
                        throw new ModelFormatException($"{source}: tensor '{name}' appears in both {other.Path} and {path}");
                    byTensor[name] = file;
                }
            }
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
        return new SafeTensorsCheckpoint(source, files, byTensor);
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public (SafeTensorsFile File, SafeTensorInfo Info) Get(string name)
    {
        if (!_byTensor.TryGetValue(name, out var file))
            throw new ModelFormatException($"{Source}: tensor '{name}' is missing (wrong model type, or an incomplete checkpoint?)");
        return (file, file.Tensors[name]);
    }

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
    }
}
