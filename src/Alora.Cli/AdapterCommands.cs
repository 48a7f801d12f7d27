using System.CommandLine;
using System.Globalization;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Tokenization;

namespace Alora.Cli;

/// <summary>`alora adapter inspect | merge | export-gguf | combine | arrow`: PEFT LoRA/aLoRA adapter folders.</summary>
internal static class AdapterCommands
{
    public static Command Adapter()
    {
        var command = new Command("adapter", "Inspect, merge, export, combine PEFT LoRA / aLoRA adapters, or build an Arrow model from several");
        command.Subcommands.Add(Inspect());
        command.Subcommands.Add(Merge());
        command.Subcommands.Add(ExportGguf());
        command.Subcommands.Add(Combine());
        command.Subcommands.Add(Arrow());
        return command;
    }

    private static Option<string> AdapterOption() => new("--adapter", "-a") { Description = "PEFT adapter folder (adapter_config.json + adapter_model.safetensors), or a GGUF LoRA file for inspect", Required = true };

    private static Option<string> ModelOption(bool required) => new("--model", "-m") { Description = "Base model: Hugging Face folder or .gguf file", Required = required };

    private static Command Inspect()
    {
        var adapter = AdapterOption();
        var model = ModelOption(required: false);
        var command = new Command("inspect", "Print an adapter's config summary (kind, r, alpha, scaling per module, targets, invocation tokens, parameter count); with --model, validate it against the base model");
        command.Options.Add(adapter);
        command.Options.Add(model);
        command.SetAction(parse => RunInspect(parse.GetValue(adapter)!, parse.GetValue(model), Console.Out));
        return command;
    }

    private static Command Merge()
    {
        var adapter = AdapterOption();
        var model = ModelOption(required: true);
        var output = new Option<string>("--out", "-o") { Description = "New Hugging Face model folder to write", Required = true };
        var safe = new Option<bool>("--safe-merge") { Description = "Check every merged weight for NaN/inf before writing anything (PEFT's safe_merge); refuse the merge and name the module if one is not finite" };
        var command = new Command("merge", "Merge a LoRA into its base model and write a new Hugging Face folder (merge-and-unload; aLoRA adapters are refused)");
        command.Options.Add(model);
        command.Options.Add(adapter);
        command.Options.Add(output);
        command.Options.Add(safe);
        command.SetAction(parse => RunMerge(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(output)!, Console.Out, parse.GetValue(safe)));
        return command;
    }

    private static Command ExportGguf()
    {
        var adapter = AdapterOption();
        var model = ModelOption(required: true);
        var output = new Option<string>("--out", "-o") { Description = "GGUF file to write", Required = true };
        var architecture = new Option<string?>("--arch") { Description = "llama.cpp architecture name (default: derived from the base model)" };
        var outType = new Option<string>("--outtype") { Description = "Type of the LoRA tensors: f32, f16 or bf16 (as convert_lora_to_gguf.py)", DefaultValueFactory = _ => "f32" };
        outType.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var command = new Command("export-gguf", "Export an adapter to llama.cpp's GGUF LoRA format");
        command.Options.Add(adapter);
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(architecture);
        command.Options.Add(outType);
        command.SetAction(parse => RunExportGguf(parse.GetValue(adapter)!, parse.GetValue(model)!, parse.GetValue(output)!, parse.GetValue(architecture), Console.Out, parse.GetValue(outType)!));
        return command;
    }

    private static Command Combine()
    {
        var adapters = new Option<string[]>("--adapter", "-a") { Description = "PEFT adapter folder (repeat, one per adapter)", Required = true, AllowMultipleArgumentsPerToken = false };
        var weights = new Option<double[]>("--weight", "-w") { Description = "Weight of each adapter, in the order of --adapter (repeat)", Required = true, AllowMultipleArgumentsPerToken = false };
        var model = ModelOption(required: true);
        var type = new Option<string>("--type") { Description = $"{string.Join(" | ", AdapterCombination.Types)} (PEFT's add_weighted_adapter combination types)", DefaultValueFactory = _ => "svd" };
        type.AcceptOnlyFromAmong([.. AdapterCombination.Types]);
        var rank = new Option<int?>("--rank") { Description = "Rank of an svd type's result (PEFT's svd_rank; default: the largest r)" };
        var clamp = new Option<double?>("--svd-clamp") { Description = "Clamp an svd type's A and B to ± this quantile of their entries (PEFT's svd_clamp, in [0, 1])" };
        var density = new Option<double?>("--density") { Description = "Fraction of entries kept by ties, dare_* and magnitude_prune types, in [0, 1]" };
        var sign = new Option<string>("--majority-sign-method") { Description = "total | frequency: how ties and dare_ties elect each element's sign", DefaultValueFactory = _ => "total" };
        sign.AcceptOnlyFromAmong("total", "frequency");
        var seed = new Option<long>("--seed") { Description = "Seed of DARE's random masks (dare_* types)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out", "-o") { Description = "Adapter folder to write", Required = true };
        var command = new Command("combine", "Combine LoRA adapters into a new one (PEFT's add_weighted_adapter: linear, cat, svd, ties, dare, magnitude_prune and their svd forms)");
        foreach (var o in new Option[] { adapters, weights, model, type, rank, clamp, density, sign, seed, output }) command.Options.Add(o);
        command.SetAction(parse => RunCombine(parse.GetValue(adapters)!, parse.GetValue(weights)!, parse.GetValue(model)!, parse.GetValue(type)!, parse.GetValue(rank), parse.GetValue(output)!, Console.Out,
            new CombinationOptions { SvdRank = parse.GetValue(rank), SvdClamp = parse.GetValue(clamp), Density = parse.GetValue(density), MajoritySignMethod = parse.GetValue(sign)!, Seed = parse.GetValue(seed) }));
        return command;
    }

    private static Command Arrow()
    {
        var tasks = new Option<string[]>("--task", "-t") { Description = "Task LoRA adapter folder (repeat; the experts, saved as task_0, task_1, …)", Required = true, AllowMultipleArgumentsPerToken = false };
        var generals = new Option<string[]>("--general", "-g") { Description = "General LoRA adapter folder for GenKnowSub (repeat; saved as gks_0, …; needs --gks)", AllowMultipleArgumentsPerToken = false };
        var model = ModelOption(required: true);
        var topK = new Option<int>("--top-k") { Description = "Experts combined per token (PEFT's ArrowConfig.top_k)", DefaultValueFactory = _ => 3 };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature of the routing weights (router_temperature)", DefaultValueFactory = _ => 1.0 };
        var gks = new Option<bool>("--gks") { Description = "GenKnowSub: subtract the mean of the --general adapters from every task adapter (use_gks)" };
        var output = new Option<string>("--out", "-o") { Description = "Folder to write (PEFT's layout: task_i/, gks_j/, arrow_router/)", Required = true };
        var command = new Command("arrow", "Build an Arrow model (per-token routing over task LoRAs, optionally with GenKnowSub) in PEFT's saved layout; serve it with --adapter NAME=FOLDER");
        foreach (var o in new Option[] { tasks, generals, model, topK, temperature, gks, output }) command.Options.Add(o);
        command.SetAction(parse => RunArrow(parse.GetValue(tasks)!, parse.GetValue(generals) ?? [], parse.GetValue(model)!,
            new ArrowOptions { TopK = parse.GetValue(topK), RouterTemperature = parse.GetValue(temperature), UseGks = parse.GetValue(gks) }, parse.GetValue(output)!, Console.Out));
        return command;
    }

    internal static int RunArrow(string[] taskFolders, string[] generalFolders, string modelPath, ArrowOptions options, string outputFolder, TextWriter output)
    {
        var baseConfig = LoadBaseConfig(modelPath);
        try
        {
            ArrowModel.Save(outputFolder, taskFolders, generalFolders, options, baseConfig);
            using var arrow = ArrowModel.Load(outputFolder, baseConfig);
            output.WriteLine($"wrote an Arrow model of {taskFolders.Length} task adapters{(options.UseGks ? $" with GenKnowSub over {generalFolders.Length} general adapters" : "")} " +
                $"(top_k {options.TopK}, temperature {options.RouterTemperature.ToString(CultureInfo.InvariantCulture)}, {arrow.Modules.Count} modules, r {arrow.Arrow!.ExpertRank}) to {outputFolder}");
            return 0;
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new CliException(e.Message);
        }
    }

    internal static int RunCombine(string[] adapterPaths, double[] weights, string modelPath, string type, int? rank, string outputFolder, TextWriter output, CombinationOptions? options = null)
    {
        options ??= new CombinationOptions { SvdRank = rank };
        if (adapterPaths.Length != weights.Length)
            throw new CliException($"give one --weight per --adapter: {adapterPaths.Length} adapters, {weights.Length} weights");
        var baseConfig = LoadBaseConfig(modelPath);
        var loaded = new List<LoraAdapter>();
        try
        {
            foreach (string path in adapterPaths) loaded.Add(LoadAdapter(path, modelPath, baseConfig));
            string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputFolder)));
            using var combined = AdapterCombination.AddWeighted(loaded.Select((a, i) => (a, weights[i])).ToList(), type, name, options);
            combined.Save(outputFolder);
            output.WriteLine($"combined {loaded.Count} adapters ({type}) into {outputFolder}: {combined.Modules.Count} modules, r={combined.Config.R}, {combined.ParameterCount} parameters");
            return 0;
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new CliException(e.Message);
        }
        finally
        {
            foreach (var a in loaded) a.Dispose();
        }
    }

    internal static int RunInspect(string adapterPath, string? modelPath, TextWriter output)
    {
        if (modelPath is null)
        {
            if (IsGguf(adapterPath)) throw new CliException($"{adapterPath}: inspecting a GGUF adapter needs --model (its base model) to interpret the tensors");
            InspectWithoutBase(adapterPath, output);
            return 0;
        }
        var baseConfig = LoadBaseConfig(modelPath);
        using var adapter = LoadAdapter(adapterPath, modelPath, baseConfig);
        PrintSummary(adapter.Name, adapterPath, adapter.Config, adapter.InvocationTokens, adapter.ActivationShift, output);
        output.WriteLine($"modules: {adapter.Modules.Count}");
        output.WriteLine($"parameters: {adapter.ParameterCount}");
        output.WriteLine("per module:");
        foreach (var m in adapter.Modules)
            output.WriteLine($"  {LoraConfig.ModuleKey(m.Layer, m.Module)}: r={m.Rank} alpha={Number(adapter.Config.AlphaOf(m.Layer, m.Module))} scaling={Number(m.Scaling)} A=[{m.Rank}, {m.InFeatures}] B=[{m.OutFeatures}, {m.Rank}]");
        output.WriteLine($"base model: {modelPath} ({baseConfig.Architecture}, {baseConfig.LayerCount} layers, hidden {baseConfig.HiddenSize}): the adapter fits");
        return 0;
    }

    /// <summary>Config and tensor names only: what can be told without the base model.</summary>
    private static void InspectWithoutBase(string folder, TextWriter output)
    {
        var config = LoraConfig.Load(Path.Combine(folder, LoraAdapter.ConfigFileName));
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)));
        PrintSummary(name, folder, config, config.AloraInvocationTokens, config.IsLegacyAlora ? 1 : 0, output);
        string weights = Path.Combine(folder, LoraAdapter.WeightsFileName);
        if (!File.Exists(weights)) throw new FileNotFoundException($"{folder}: {LoraAdapter.WeightsFileName} is missing", weights);
        using var file = SafeTensorsFile.Open(weights);
        var modules = new SortedDictionary<string, (long Parameters, int Rank)>(StringComparer.Ordinal);
        foreach (var (key, info) in file.Tensors)
        {
            string module = key.StartsWith(LoraAdapter.PeftKeyPrefix, StringComparison.Ordinal) ? key[LoraAdapter.PeftKeyPrefix.Length..] : key;
            int cut = module.IndexOf(".lora_", StringComparison.Ordinal);
            if (cut > 0) module = module[..cut];
            var entry = modules.GetValueOrDefault(module);
            int rank = key.EndsWith("lora_A.weight", StringComparison.Ordinal) && info.Shape.Length == 2 ? (int)info.Shape[0] : entry.Rank;
            modules[module] = (entry.Parameters + info.ElementCount, rank);
        }
        output.WriteLine($"modules: {modules.Count}");
        output.WriteLine($"parameters: {modules.Values.Sum(m => m.Parameters)}");
        output.WriteLine("per module:");
        foreach (var (module, (_, rank)) in modules.OrderBy(kv => ModuleOrder(kv.Key)).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var parsed = System.Text.RegularExpressions.Regex.Match(module, @"^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)$");
            if (parsed.Success && LoraConfig.ModuleIndex(parsed.Groups[2].Value) >= 0)
            {
                int layer = int.Parse(parsed.Groups[1].Value, CultureInfo.InvariantCulture);
                string proj = parsed.Groups[2].Value;
                output.WriteLine($"  {module}: r={rank} (config {config.RankOf(layer, proj)}) alpha={Number(config.AlphaOf(layer, proj))} scaling={Number(config.ScalingOf(layer, proj))}");
            }
            else
            {
                output.WriteLine($"  {module}: r={rank} (not a Llama-family projection)");
            }
        }
        output.WriteLine("base model: not checked (give --model to validate shapes, layer count and target names)");
    }

    /// <summary>Sorts module names by layer, then q, k, v, o, gate, up, down.</summary>
    private static (int Layer, int Module) ModuleOrder(string module)
    {
        var parsed = System.Text.RegularExpressions.Regex.Match(module, @"^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)$");
        return parsed.Success ? (int.Parse(parsed.Groups[1].Value, CultureInfo.InvariantCulture), LoraConfig.ModuleIndex(parsed.Groups[2].Value)) : (int.MaxValue, 0);
    }

    private static void PrintSummary(string name, string path, LoraConfig config, int[]? invocation, int shift, TextWriter output)
    {
        output.WriteLine($"adapter: {name} ({path})");
        output.WriteLine($"kind: {(config.IsActivated ? config.IsLegacyAlora ? "aLoRA (legacy IBM: invocation_string, activates one token later)" : "aLoRA" : "LoRA")}");
        output.WriteLine($"base_model_name_or_path: {config.BaseModelNameOrPath ?? "(none)"}");
        output.WriteLine($"r: {config.R}");
        output.WriteLine($"lora_alpha: {Number(config.LoraAlpha)}");
        output.WriteLine($"use_rslora: {(config.UseRslora ? "true" : "false")}");
        if (config.UseDora) output.WriteLine("use_dora: true (DoRA: a magnitude vector per module)");
        output.WriteLine($"scaling: {Number(config.UseRslora ? config.LoraAlpha / Math.Sqrt(config.R) : config.LoraAlpha / config.R)}{(config.RankPattern.Count + config.AlphaPattern.Count > 0 ? " (default; rank_pattern/alpha_pattern change some modules)" : "")}");
        output.WriteLine($"target_modules: {(config.TargetModulesRegex is not null ? config.TargetModulesRegex : "[" + string.Join(", ", config.TargetModules ?? []) + "]")}");
        if (config.ExcludeModules is not null || config.ExcludeModulesRegex is not null)
            output.WriteLine($"exclude_modules: {config.ExcludeModulesRegex ?? "[" + string.Join(", ", config.ExcludeModules!) + "]"}");
        if (config.LayersToTransform is not null) output.WriteLine($"layers_to_transform: [{string.Join(", ", config.LayersToTransform)}]");
        if (config.RankPattern.Count > 0) output.WriteLine($"rank_pattern: {string.Join(", ", config.RankPattern.Select(kv => $"{kv.Key}={kv.Value}"))}");
        if (config.AlphaPattern.Count > 0) output.WriteLine($"alpha_pattern: {string.Join(", ", config.AlphaPattern.Select(kv => $"{kv.Key}={Number(kv.Value)}"))}");
        if (config.InvocationString is not null) output.WriteLine($"invocation_string: {System.Text.Json.JsonSerializer.Serialize(config.InvocationString)}");
        output.WriteLine($"invocation_tokens: {(invocation is null ? config.IsLegacyAlora ? "(tokenized with --model's tokenizer)" : "none" : "[" + string.Join(", ", invocation) + "]")}");
        if (config.IsActivated) output.WriteLine($"activation_shift: {shift}");
    }

    internal static int RunMerge(string modelPath, string adapterPath, string outputFolder, TextWriter output, bool safeMerge = false)
    {
        if (IsGguf(modelPath)) throw new CliException($"{modelPath}: merge writes a Hugging Face folder and needs a Hugging Face base model folder, not a .gguf file");
        var baseConfig = LoadBaseConfig(modelPath);
        var config = LoraConfig.Load(Path.Combine(adapterPath, LoraAdapter.ConfigFileName));
        if (config.IsActivated)
            throw new CliException($"{adapterPath} is an aLoRA adapter: it cannot be merged, because it applies only from its invocation sequence on (PEFT refuses this too). Serve it unmerged.");
        using var adapter = LoadAdapter(adapterPath, modelPath, baseConfig);
        try
        {
            LoraMerge.MergeAndUnload(modelPath, adapter, outputFolder, safeMerge);
        }
        catch (InvalidOperationException e)
        {
            throw new CliException(e.Message);
        }
        output.WriteLine($"merged {adapter.Modules.Count} modules of '{adapter.Name}' into {modelPath}; wrote {outputFolder}");
        return 0;
    }

    internal static int RunExportGguf(string adapterPath, string modelPath, string ggufPath, string? architecture, TextWriter output, string outType = "f32")
    {
        var baseConfig = LoadBaseConfig(modelPath);
        using var adapter = LoadAdapter(adapterPath, modelPath, baseConfig);
        try
        {
            GgufLoraExport.Export(adapter, ggufPath, architecture, GgufLoraExport.ParseOutType(outType));
        }
        catch (InvalidOperationException e)
        {
            throw new CliException(e.Message);
        }
        output.WriteLine($"exported {adapter.Modules.Count} modules of '{adapter.Name}' ({(adapter.IsActivated ? "aLoRA" : "LoRA")}) to {ggufPath} (architecture {architecture ?? GgufLoraExport.ArchitectureOf(baseConfig)}, {outType})");
        return 0;
    }

    private static bool IsGguf(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && File.Exists(path);

    private static ModelConfig LoadBaseConfig(string modelPath)
    {
        if (IsGguf(modelPath))
        {
            using var gguf = GgufFile.Open(modelPath);
            return ModelConfig.FromGguf(gguf);
        }
        if (!Directory.Exists(modelPath)) throw new DirectoryNotFoundException($"base model not found: {modelPath} (expected a Hugging Face folder or a .gguf file)");
        return ModelConfig.FromFile(Path.Combine(modelPath, "config.json"));
    }

    /// <summary>Loads a PEFT folder (tokenizing a legacy invocation_string with the base model's tokenizer) or a GGUF LoRA.</summary>
    private static LoraAdapter LoadAdapter(string adapterPath, string modelPath, ModelConfig baseConfig)
    {
        if (IsGguf(adapterPath)) return GgufLoraExport.Read(adapterPath, baseConfig);
        var config = LoraConfig.Load(Path.Combine(adapterPath, LoraAdapter.ConfigFileName));
        var tokenizer = config.IsLegacyAlora ? Tokenizer.Load(modelPath) : null;
        return LoraAdapter.Load(adapterPath, baseConfig, tokenizer: tokenizer);
    }

    private static string Number(double value) => value.ToString("0.######", CultureInfo.InvariantCulture);
}
