using System.Text.RegularExpressions;
using Alora.Formats;
using Alora.Models;
using Alora.Tensors;
using Alora.Tokenization;

namespace Alora.Adapters;

// PEFT's adapter folder: adapter_config.json + adapter_model.safetensors with keys
// base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight [r, in] and ….lora_B.weight [out, r];
// with use_dora also ….lora_magnitude_vector [out] (PEFT saves DoRA's magnitude under that key, without ".weight",
// although the module holding it calls the parameter "weight"; a key with ".weight" is read too).
public sealed unsafe partial class LoraAdapter
{
    private static readonly Regex s_peftKey = new(
        @"^base_model\.model\.(?<module>model\.layers\.(?<layer>\d+)\.(?:self_attn|mlp)\.(?<name>[A-Za-z0-9_]+))\.(?:lora_(?<ab>[AB])\.weight|(?<magnitude>lora_magnitude_vector)(?:\.weight)?)$",
        RegexOptions.CultureInvariant);

    /// <summary>
    /// Loads a PEFT adapter folder and validates it against <paramref name="baseConfig"/>. A legacy IBM aLoRA
    /// (invocation_string) needs <paramref name="tokenizer"/>, the base model's, to turn the text into ids.
    /// </summary>
    public static LoraAdapter Load(string folder, ModelConfig baseConfig, string? name = null, Tokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(baseConfig);
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"adapter folder not found: {folder} (expected a folder with {ConfigFileName} and {WeightsFileName})");
        name ??= System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(folder)));
        string configPath = System.IO.Path.Combine(folder, ConfigFileName);
        var config = LoraConfig.Load(configPath);

        int[]? invocation;
        int shift = 0;
        if (config.IsLegacyAlora)
        {
            if (tokenizer is null)
                throw new ModelFormatException(
                    $"{configPath}: this legacy IBM aLoRA gives its invocation as text (invocation_string {System.Text.Json.JsonSerializer.Serialize(config.InvocationString)}); load it with the base model's tokenizer to turn the text into token ids");
            invocation = Tokenization.InvocationTokens.Encode(tokenizer, config.InvocationString!);
            if (invocation.Length == 0)
                throw new ModelFormatException($"{configPath}: invocation_string {System.Text.Json.JsonSerializer.Serialize(config.InvocationString)} tokenizes to no ids; the adapter could never activate");
            // IBM's implementation starts adapting one token after the start of the invocation.
            shift = 1;
        }
        else
        {
            invocation = CheckInvocation(config, baseConfig, configPath);
        }

        string weightsPath = System.IO.Path.Combine(folder, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            string pickle = System.IO.Path.Combine(folder, "adapter_model.bin");
            if (File.Exists(pickle))
                throw new ModelFormatException($"{pickle}: PyTorch pickle adapters are not read (unsafe to unpickle); convert it to {WeightsFileName}");
            throw new FileNotFoundException($"{folder}: {WeightsFileName} is missing", weightsPath);
        }

        using var file = SafeTensorsFile.Open(weightsPath);
        var shapes = TargetedModules(config, baseConfig, configPath);
        CheckTensorNames(file, config, baseConfig, shapes);
        var adapter = Allocate(name, folder, config, baseConfig, invocation, shift, shapes);
        try
        {
            foreach (var module in adapter._modules)
            {
                ReadTensor(file, module.PeftPrefix + ".lora_A.weight", module.Rank, module.InFeatures, (float*)module.A.Data, module, "[r, in]");
                ReadTensor(file, module.PeftPrefix + ".lora_B.weight", module.OutFeatures, module.Rank, (float*)module.B.Data, module, "[out, r]");
                if (module.IsDora) ReadMagnitude(file, MagnitudeKey(file, module.PeftPrefix)!, module);
            }
            return adapter;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>Every tensor in the file must be a LoRA A/B of a module the config targets in this base model.</summary>
    private static void CheckTensorNames(SafeTensorsFile file, LoraConfig config, ModelConfig baseConfig, List<(int Layer, string Module, int Rank)> shapes)
    {
        var targeted = shapes.Select(s => (s.Layer, s.Module)).ToHashSet();
        foreach (string key in file.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var match = s_peftKey.Match(key);
            if (!match.Success)
            {
                string what = key.Contains("lora_embedding", StringComparison.Ordinal) ? " (a LoRA on an embedding; not supported)"
                    : key.EndsWith(".bias", StringComparison.Ordinal) ? " (a bias; lora_bias and bias != \"none\" are not supported)"
                    : key.Contains("lm_head", StringComparison.Ordinal) || key.Contains("embed_tokens", StringComparison.Ordinal)
                        ? " (a LoRA on lm_head or embed_tokens; Alora adapts only the seven decoder projections)"
                    : " (expected base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight / lora_B.weight)";
                throw new ModelFormatException($"{file.Path}: unexpected tensor '{key}'{what}");
            }
            int layer = int.Parse(match.Groups["layer"].Value, System.Globalization.CultureInfo.InvariantCulture);
            string module = match.Groups["name"].Value;
            if (!LoraConfig.ProjectionModules.Contains(module))
                throw new ModelFormatException(
                    $"{file.Path}: tensor '{key}' is for module '{module}', which a {baseConfig.Architecture} model does not have (expected one of {string.Join(", ", LoraConfig.ProjectionModules)}): wrong base model?");
            if (layer >= baseConfig.LayerCount)
                throw new ModelFormatException(
                    $"{file.Path}: tensor '{key}' is for layer {layer}, but the base model has {baseConfig.LayerCount} layers (0..{baseConfig.LayerCount - 1}): wrong base model?");
            if (match.Groups["module"].Value != LoraConfig.ModuleKey(layer, module))
                throw new ModelFormatException($"{file.Path}: tensor '{key}' puts {module} under the wrong block (expected {LoraConfig.ModuleKey(layer, module)}): wrong base model?");
            if (match.Groups["magnitude"].Success && !config.UseDora)
                throw new ModelFormatException(
                    $"{file.Path}: tensor '{key}' is a DoRA magnitude vector, but adapter_config.json has use_dora false (a DoRA adapter's config says use_dora: true)");
            if (!targeted.Contains((layer, module)))
                throw new ModelFormatException(
                    $"{file.Path}: tensor '{key}' is for {LoraConfig.ModuleKey(layer, module)}, which adapter_config.json does not target (target_modules / layers_to_transform / exclude_modules disagree with the weights)");
        }
        foreach (var (layer, module, _) in shapes)
            foreach (string ab in new[] { "A", "B" })
            {
                string key = PeftKeyPrefix + LoraConfig.ModuleKey(layer, module) + $".lora_{ab}.weight";
                if (!file.Tensors.ContainsKey(key))
                    throw new ModelFormatException($"{file.Path}: tensor '{key}' is missing (adapter_config.json targets {LoraConfig.ModuleKey(layer, module)} in this base model)");
            }
        if (config.UseDora)
            foreach (var (layer, module, _) in shapes)
            {
                string prefix = PeftKeyPrefix + LoraConfig.ModuleKey(layer, module);
                if (MagnitudeKey(file, prefix) is null)
                    throw new ModelFormatException(
                        $"{file.Path}: tensor '{prefix}.{MagnitudeSuffix}' is missing (adapter_config.json has use_dora true, so every targeted module needs its DoRA magnitude vector)");
                if (file.Tensors.ContainsKey(prefix + "." + MagnitudeSuffix) && file.Tensors.ContainsKey(prefix + "." + MagnitudeSuffix + ".weight"))
                    throw new ModelFormatException($"{file.Path}: both '{prefix}.{MagnitudeSuffix}' and '{prefix}.{MagnitudeSuffix}.weight' are present; expected one magnitude vector per module");
            }
    }

    /// <summary>PEFT's key suffix of DoRA's magnitude vector in adapter_model.safetensors.</summary>
    public const string MagnitudeSuffix = "lora_magnitude_vector";

    private static string? MagnitudeKey(SafeTensorsFile file, string prefix)
    {
        string key = prefix + "." + MagnitudeSuffix;
        return file.Tensors.ContainsKey(key) ? key : file.Tensors.ContainsKey(key + ".weight") ? key + ".weight" : null;
    }

    private static void ReadMagnitude(SafeTensorsFile file, string key, LoraModule module)
    {
        var info = file.Tensors[key];
        var dtype = info.ToWeightDType(file.Path);
        if (info.Shape.Length != 1 || info.Shape[0] != module.OutFeatures)
            throw new ModelFormatException(
                $"{file.Path}: tensor '{key}' has shape {SafeTensorsFile.FormatShape(info.Shape)}; expected DoRA's magnitude vector [out] = [{module.OutFeatures}] for {module.Module}: wrong base model?");
        Kernels.Convert.ToSingle(module.Magnitude, file.DataPointer(info), dtype, module.OutFeatures);
        for (int j = 0; j < module.OutFeatures; j++)
            if (!float.IsFinite(module.Magnitude[j]))
                throw new ModelFormatException($"{file.Path}: tensor '{key}' holds {module.Magnitude[j]} at index {j}; expected finite magnitudes");
    }

    private static void ReadTensor(SafeTensorsFile file, string key, int rows, int cols, float* destination, LoraModule module, string layout)
    {
        var info = file.Tensors[key];
        var dtype = info.ToWeightDType(file.Path);
        if (info.Shape.Length != 2)
            throw new ModelFormatException($"{file.Path}: tensor '{key}' has shape {SafeTensorsFile.FormatShape(info.Shape)}; expected a matrix {layout} = [{rows}, {cols}]");
        bool isA = key.EndsWith(".lora_A.weight", StringComparison.Ordinal);
        long rankDim = isA ? info.Shape[0] : info.Shape[1];
        long featureDim = isA ? info.Shape[1] : info.Shape[0];
        long expectedFeatures = isA ? cols : rows;
        if (featureDim != expectedFeatures)
            throw new ModelFormatException(
                $"{file.Path}: tensor '{key}' has shape {SafeTensorsFile.FormatShape(info.Shape)}, but {module.Module} of this base model has {(isA ? "in" : "out")}_features {expectedFeatures} " +
                $"(expected {layout} = [{rows}, {cols}]): wrong base model?");
        if (rankDim != module.Rank)
            throw new ModelFormatException(
                $"{file.Path}: tensor '{key}' has rank {rankDim} (shape {SafeTensorsFile.FormatShape(info.Shape)}), but adapter_config.json gives {LoraConfig.ModuleKey(module.Layer, module.Module)} rank {module.Rank} " +
                "(r, or its rank_pattern entry): rank mismatch");
        Kernels.Convert.ToSingle(destination, file.DataPointer(info), dtype, (long)rows * cols);
    }

    /// <summary>
    /// Writes adapter_config.json and adapter_model.safetensors (f32, PEFT's key names) into <paramref name="folder"/>,
    /// each to a temporary file renamed into place; the weights go first so a config never points at missing weights.
    /// </summary>
    public void Save(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (Arrow is not null)
            throw new InvalidOperationException($"adapter '{Name}' is an Arrow model: its experts are routed per token, which a single LoRA folder cannot express; write PEFT's Arrow layout with ArrowModel.Save (alora adapter arrow)");
        Directory.CreateDirectory(folder);
        var tensors = new List<SafeTensorToWrite>();
        foreach (var m in _modules)
        {
            tensors.Add(SafeTensorToWrite.FromFloats(m.PeftPrefix + ".lora_A.weight", [m.Rank, m.InFeatures], m.AValues.ToArray()));
            tensors.Add(SafeTensorToWrite.FromFloats(m.PeftPrefix + ".lora_B.weight", [m.OutFeatures, m.Rank], m.BValues.ToArray()));
            if (m.IsDora) tensors.Add(SafeTensorToWrite.FromFloats(m.PeftPrefix + "." + MagnitudeSuffix, [m.OutFeatures], m.MagnitudeValues.ToArray()));
        }
        SafeTensorsWriter.Write(System.IO.Path.Combine(folder, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        Config.Save(System.IO.Path.Combine(folder, ConfigFileName));
    }
}
