using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Formats;
using Alora.Models;

namespace Alora.Adapters;

// Legend: E = task experts, G = general adapters (GenKnowSub), r = the common rank, in/out = a projection's features.

/// <summary>PEFT's ArrowConfig: top_k experts per token, the softmax temperature, and GenKnowSub.</summary>
public sealed record ArrowOptions
{
    public int TopK { get; init; } = 3;
    public double RouterTemperature { get; init; } = 1.0;
    /// <summary>GenKnowSub: subtract the mean of the general adapters' A and B from every task adapter's A and B.</summary>
    public bool UseGks { get; init; }
}

/// <summary>
/// Arrow (PEFT's create_arrow_model / ArrowLoraLinearLayer) and GenKnowSub over a library of task LoRAs:
/// <list type="number">
/// <item>GenKnowSub (use_gks): Āₘ, B̄ₘ = the element-wise means of the general adapters' A and B per module; every task
/// adapter's A and B become A − Ā and B − B̄ (f32, as PEFT's in-place sub_).</item>
/// <item>Prototypes: per module and expert, the top right singular vector of Bₑ·Aₑ (unit length, sign irrelevant),
/// computed exactly in f64 (<see cref="LowRankSvd"/>); PEFT approximates it by 15 power iterations from a random
/// start (rng_seed), which converges to the same vector up to (σ₂/σ₁)³⁰.</item>
/// <item>Per token and module: the <see cref="ArrowRouter"/> weights the experts' outputs sₑ·Bₑ·Aₑ·x.</item>
/// </list>
/// The result is a <see cref="LoraAdapter"/> whose modules hold the experts stacked (rank E·r, scaling 1) and whose
/// forward view routes per token; it serves like any adapter (mixed batches, KV lineage) but cannot be merged,
/// combined, exported or saved as a plain LoRA (PEFT refuses merging an Arrow router too). <see cref="Save"/> writes
/// PEFT's layout instead.
/// </summary>
public sealed class ArrowModel
{
    /// <summary>PEFT's names: the router adapter and the prefixes create_arrow_model gives the experts.</summary>
    public const string RouterName = "arrow_router", TaskPrefix = "task_", GeneralPrefix = "gks_";

    private ArrowModel(ArrowOptions options, IReadOnlyList<string> taskNames, IReadOnlyList<string> generalNames, int rank,
        Dictionary<(int, string), ArrowRouter> routers, Dictionary<(int, string), (float[] A, float[] B)[]> experts)
    {
        Options = options;
        TaskNames = taskNames;
        GeneralNames = generalNames;
        ExpertRank = rank;
        _routers = routers;
        _experts = experts;
    }

    private readonly Dictionary<(int, string), ArrowRouter> _routers;
    private readonly Dictionary<(int, string), (float[] A, float[] B)[]> _experts;

    public ArrowOptions Options { get; }
    public IReadOnlyList<string> TaskNames { get; }
    public IReadOnlyList<string> GeneralNames { get; }
    public int ExpertRank { get; }

    /// <summary>The router of one module (prototypes, scalings, top_k, temperature).</summary>
    public ArrowRouter Router(int layer, string module) => _routers[(layer, module)];

    /// <summary>Expert e's A [r, in] and B [out, r] of one module after GenKnowSub (the tensors the experts route through).</summary>
    public (float[] A, float[] B) Expert(int layer, string module, int expert) => _experts[(layer, module)][expert];

    internal ArrowRouter? RouterOf(int layer, string module) => _routers.GetValueOrDefault((layer, module));

    /// <summary>
    /// Builds the Arrow adapter named <paramref name="name"/> from task adapters and (with use_gks) general adapters, which
    /// must share rank, shapes and modules (PEFT's check_loaded_lora_compatibility_arrow). The inputs are not changed.
    /// </summary>
    public static LoraAdapter Build(string name, IReadOnlyList<LoraAdapter> tasks, IReadOnlyList<LoraAdapter> generals, ArrowOptions options, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(tasks);
        ArgumentNullException.ThrowIfNull(generals);
        ArgumentNullException.ThrowIfNull(options);
        if (tasks.Count == 0) throw new ArgumentException("Arrow needs at least one task adapter", nameof(tasks));
        if (options.TopK < 1 || options.TopK > tasks.Count)
            throw new ArgumentOutOfRangeException(nameof(options), options.TopK, $"arrow_config top_k {options.TopK}: it must lie in [1, {tasks.Count}] (the number of task adapters)");
        if (!(options.RouterTemperature > 0) || double.IsInfinity(options.RouterTemperature))
            throw new ArgumentOutOfRangeException(nameof(options), options.RouterTemperature, "arrow_config router_temperature must be greater than 0");
        if (options.UseGks && generals.Count == 0)
            throw new ArgumentException("use_gks (GenKnowSub) needs at least one general adapter to subtract", nameof(generals));
        if (!options.UseGks && generals.Count > 0)
            throw new ArgumentException($"{generals.Count} general adapter(s) given but use_gks is false: GenKnowSub would not use them", nameof(generals));

        var all = tasks.Concat(generals).ToList();
        var first = tasks[0];
        var keys = first.Modules.Select(m => (m.Layer, m.Module)).ToList();
        int rank = first.Modules[0].Rank;
        foreach (var adapter in all)
        {
            LoraMerge.RefuseActivated(adapter, "be an Arrow expert");
            if (adapter.IsDora) throw new ArgumentException($"adapter '{adapter.Name}' is a DoRA adapter: Arrow routes plain LoRA experts only");
            if (adapter.Arrow is not null) throw new ArgumentException($"adapter '{adapter.Name}' is itself an Arrow model");
            LoraMerge.CheckBaseShapes(first.BaseConfig, adapter, $"the base model of adapter '{first.Name}'");
            var own = adapter.Modules.Select(m => (m.Layer, m.Module)).ToHashSet();
            if (!own.SetEquals(keys))
                throw new ArgumentException(
                    $"Arrow needs every adapter to target the same modules: '{adapter.Name}' has {Describe(own)}, '{first.Name}' has {Describe(keys)}");
            foreach (var m in adapter.Modules)
                if (m.Rank != rank)
                    throw new ArgumentException($"Arrow needs one rank for all adapters: '{adapter.Name}' has r={m.Rank} on {LoraConfig.ModuleKey(m.Layer, m.Module)}, '{first.Name}' has r={rank}");
        }

        int experts = tasks.Count;
        var routers = new Dictionary<(int, string), ArrowRouter>();
        var expertTensors = new Dictionary<(int, string), (float[] A, float[] B)[]>();
        foreach (var key in keys)
        {
            var sample = first.Get(key.Layer, key.Module)!;
            int inFeatures = sample.InFeatures, outFeatures = sample.OutFeatures;
            float[]? meanA = null, meanB = null;
            if (options.UseGks)
            {
                meanA = Mean(generals.Select(g => g.Get(key.Layer, key.Module)!.AValues.ToArray()).ToList());
                meanB = Mean(generals.Select(g => g.Get(key.Layer, key.Module)!.BValues.ToArray()).ToList());
            }
            var pairs = new (float[] A, float[] B)[experts];
            var prototypes = new float[experts * inFeatures];
            var scalings = new float[experts];
            for (int e = 0; e < experts; e++)
            {
                var module = tasks[e].Get(key.Layer, key.Module)!;
                float[] a = module.AValues.ToArray(), b = module.BValues.ToArray();
                if (meanA is not null)
                {
                    for (int i = 0; i < a.Length; i++) a[i] -= meanA[i];
                    for (int i = 0; i < b.Length; i++) b[i] -= meanB![i];
                }
                pairs[e] = (a, b);
                scalings[e] = module.Scaling;
                TopRightSingularVector(a, b, outFeatures, inFeatures, rank).CopyTo(prototypes.AsSpan(e * inFeatures));
            }
            expertTensors[key] = pairs;
            routers[key] = new ArrowRouter(prototypes, scalings, inFeatures, rank, options.TopK, options.RouterTemperature);
        }

        var model = new ArrowModel(options, tasks.Select(t => t.Name).ToList(), generals.Select(g => g.Name).ToList(), rank, routers, expertTensors);
        int stacked = experts * rank;
        var config = first.Config with
        {
            R = stacked,
            LoraAlpha = stacked,
            UseRslora = false,
            RankPattern = new Dictionary<string, int>(),
            AlphaPattern = new Dictionary<string, double>(),
            AloraInvocationTokens = null,
            InvocationString = null,
        };
        config = config.SelectingExactly(keys, first.BaseConfig);
        var result = LoraAdapter.Allocate(name, sourcePath, config, first.BaseConfig, null, 0, keys.Select(k => (k.Layer, k.Module, stacked)).ToList());
        try
        {
            foreach (var target in result.Modules)
            {
                var pairs = expertTensors[(target.Layer, target.Module)];
                var a = target.AValues;   // [E·r, in]: expert e's rows at e·r
                var b = target.BValues;   // [out, E·r]: expert e's columns at e·r
                for (int e = 0; e < experts; e++)
                {
                    pairs[e].A.CopyTo(a.Slice(e * rank * target.InFeatures, rank * target.InFeatures));
                    for (int o = 0; o < target.OutFeatures; o++)
                        pairs[e].B.AsSpan(o * rank, rank).CopyTo(b.Slice(o * stacked + e * rank, rank));
                }
            }
            result.Arrow = model;
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static string Describe(IEnumerable<(int Layer, string Module)> keys)
    {
        var list = keys.OrderBy(k => k.Layer).ThenBy(k => LoraConfig.ModuleIndex(k.Module)).Select(k => LoraConfig.ModuleKey(k.Layer, k.Module)).ToList();
        return list.Count <= 4 ? "[" + string.Join(", ", list) + "]" : $"{list.Count} modules [{string.Join(", ", list.Take(3))}, …]";
    }

    /// <summary>The element-wise mean of equal-length tensors, summed in f64 and rounded once.</summary>
    private static float[] Mean(List<float[]> tensors)
    {
        var mean = new float[tensors[0].Length];
        for (int i = 0; i < mean.Length; i++)
        {
            double sum = 0;
            foreach (var t in tensors) sum += t[i];
            mean[i] = (float)(sum / tensors.Count);
        }
        return mean;
    }

    /// <summary>The unit top right singular vector [in] of B·A (zero when B·A is zero).</summary>
    internal static float[] TopRightSingularVector(float[] a, float[] b, int outFeatures, int inFeatures, int rank)
    {
        var bd = b.Select(v => (double)v).ToArray();
        var ad = a.Select(v => (double)v).ToArray();
        var (_, top) = LowRankSvd.Truncate(bd, ad, outFeatures, inFeatures, rank, 1);
        return top.Select(v => (float)v).ToArray();
    }

    // ---- PEFT's saved layout -----------------------------------------------------------------------------------

    /// <summary>
    /// Whether <paramref name="folder"/> is an Arrow model as PEFT's save_pretrained writes one: a folder holding
    /// arrow_router/adapter_config.json (with arrow_config) next to the experts' folders, or that arrow_router folder itself.
    /// </summary>
    public static bool IsArrowFolder(string folder)
    {
        if (File.Exists(Path.Combine(folder, RouterName, LoraAdapter.ConfigFileName))) return true;
        string config = Path.Combine(folder, LoraAdapter.ConfigFileName);
        if (!File.Exists(config)) return false;
        try
        {
            return JsonNode.Parse(File.ReadAllText(config)) is JsonObject o && o["arrow_config"] is JsonObject;
        }
        catch (JsonException)
        {
            return false;   // LoraAdapter.Load reports the bad JSON
        }
    }

    /// <summary>
    /// Loads an Arrow model from PEFT's layout: the router's adapter_config.json gives arrow_config (top_k,
    /// router_temperature, use_gks, task_adapter_names, gks_adapter_names; rng_seed only seeds PEFT's power iteration,
    /// which is exact here), and each named expert is the sibling folder of that name.
    /// </summary>
    public static LoraAdapter Load(string folder, ModelConfig baseConfig, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(baseConfig);
        string routerFolder = File.Exists(Path.Combine(folder, RouterName, LoraAdapter.ConfigFileName)) ? Path.Combine(folder, RouterName) : folder;
        string root = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(routerFolder)))!;
        string configPath = Path.Combine(routerFolder, LoraAdapter.ConfigFileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{folder}: no {RouterName}/{LoraAdapter.ConfigFileName} (an Arrow model folder as PEFT's save_pretrained writes it)", configPath);
        JsonObject arrow;
        try
        {
            arrow = (JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject)?["arrow_config"] as JsonObject
                ?? throw new ModelFormatException($"{configPath}: arrow_config is missing or not an object; expected PEFT's ArrowConfig (top_k, router_temperature, use_gks, task_adapter_names, gks_adapter_names)");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{configPath}: not valid JSON ({e.Message})");
        }
        var options = new ArrowOptions
        {
            TopK = ReadInt(arrow, "top_k", 3, configPath),
            RouterTemperature = ReadDouble(arrow, "router_temperature", 1.0, configPath),
            UseGks = ReadBool(arrow, "use_gks", false, configPath),
        };
        var taskNames = ReadNames(arrow, "task_adapter_names", configPath)
            ?? throw new ModelFormatException($"{configPath}: arrow_config.task_adapter_names is null; PEFT's create_arrow_model sets it to the experts' names (task_0, task_1, …)");
        if (taskNames.Count == 0) throw new ModelFormatException($"{configPath}: arrow_config.task_adapter_names is empty; Arrow needs at least one task adapter");
        var generalNames = options.UseGks ? ReadNames(arrow, "gks_adapter_names", configPath) ?? [] : [];
        if (options.UseGks && generalNames.Count == 0)
            throw new ModelFormatException($"{configPath}: use_gks is true but arrow_config.gks_adapter_names is empty; GenKnowSub needs the general adapters' names");
        foreach (string expert in taskNames.Concat(generalNames))
            if (expert.Length == 0 || expert.Contains('/') || expert.Contains('\\') || expert is "." or "..")
                throw new ModelFormatException($"{configPath}: adapter name '{expert}' in arrow_config is not a folder name");

        var loaded = new List<LoraAdapter>();
        try
        {
            LoraAdapter LoadExpert(string expert)
            {
                string path = Path.Combine(root, expert);
                if (!Directory.Exists(path))
                    throw new DirectoryNotFoundException($"{configPath} names adapter '{expert}', but {path} does not exist (PEFT saves each adapter of an Arrow model in a folder of its name)");
                var adapter = LoraAdapter.Load(path, baseConfig, expert);
                loaded.Add(adapter);
                return adapter;
            }
            var tasks = taskNames.Select(LoadExpert).ToList();
            var generals = generalNames.Select(LoadExpert).ToList();
            return Build(name ?? Path.GetFileName(root), tasks, generals, options, routerFolder);
        }
        finally
        {
            foreach (var a in loaded) a.Dispose();
        }
    }

    /// <summary>
    /// Writes PEFT's layout of an Arrow model built from adapter folders: {out}/task_i and {out}/gks_j (copies of the
    /// given folders, before GenKnowSub, as create_arrow_model loads them) and {out}/arrow_router (adapter_config.json
    /// with arrow_config, target_modules and r; its own lora_A/lora_B, which Arrow never uses, as zeros).
    /// </summary>
    public static void Save(string outputFolder, IReadOnlyList<string> taskFolders, IReadOnlyList<string> generalFolders, ArrowOptions options, ModelConfig baseConfig)
    {
        ArgumentNullException.ThrowIfNull(outputFolder);
        // Validate by building once: the same checks as loading.
        var tasks = new List<LoraAdapter>();
        var generals = new List<LoraAdapter>();
        try
        {
            foreach (string f in taskFolders) tasks.Add(LoraAdapter.Load(f, baseConfig));
            foreach (string f in generalFolders) generals.Add(LoraAdapter.Load(f, baseConfig));
            using var built = Build(RouterName, tasks, generals, options);
            Directory.CreateDirectory(outputFolder);
            for (int i = 0; i < taskFolders.Count; i++) CopyAdapter(taskFolders[i], Path.Combine(outputFolder, TaskPrefix + i));
            for (int j = 0; j < generalFolders.Count; j++) CopyAdapter(generalFolders[j], Path.Combine(outputFolder, GeneralPrefix + j));
            string router = Path.Combine(outputFolder, RouterName);
            Directory.CreateDirectory(router);
            var first = tasks[0];
            int rank = first.Modules[0].Rank;
            var tensors = new List<SafeTensorToWrite>();
            foreach (var m in first.Modules)
            {
                tensors.Add(SafeTensorToWrite.FromFloats(m.PeftPrefix + ".lora_A.weight", [rank, m.InFeatures], new float[rank * m.InFeatures]));
                tensors.Add(SafeTensorToWrite.FromFloats(m.PeftPrefix + ".lora_B.weight", [m.OutFeatures, rank], new float[m.OutFeatures * rank]));
            }
            SafeTensorsWriter.Write(Path.Combine(router, LoraAdapter.WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            // PEFT's router config: LoraConfig(arrow_config=…, target_modules=the experts' module names, r=their rank).
            var routerConfig = new LoraConfig
            {
                R = rank,
                LoraAlpha = 8,
                TargetModules = first.Modules.Select(m => m.Module).Distinct().OrderBy(LoraConfig.ModuleIndex).ToList(),
                BaseModelNameOrPath = first.Config.BaseModelNameOrPath,
            };
            string configPath = Path.Combine(router, LoraAdapter.ConfigFileName);
            routerConfig.Save(configPath);
            var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            json["arrow_config"] = new JsonObject
            {
                ["top_k"] = options.TopK,
                ["router_temperature"] = options.RouterTemperature,
                ["use_gks"] = options.UseGks,
                ["task_adapter_names"] = new JsonArray(Enumerable.Range(0, taskFolders.Count).Select(i => (JsonNode)JsonValue.Create(TaskPrefix + i)!).ToArray()),
                ["gks_adapter_names"] = new JsonArray(Enumerable.Range(0, generalFolders.Count).Select(j => (JsonNode)JsonValue.Create(GeneralPrefix + j)!).ToArray()),
                ["rng_seed"] = null,
            };
            AtomicFile.WriteAllText(configPath, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        finally
        {
            foreach (var a in tasks.Concat(generals)) a.Dispose();
        }
    }

    private static void CopyAdapter(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (string file in new[] { LoraAdapter.ConfigFileName, LoraAdapter.WeightsFileName })
            File.Copy(Path.Combine(source, file), Path.Combine(destination, file), overwrite: true);
    }

    private static int ReadInt(JsonObject o, string field, int fallback, string path)
        => o[field] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<int>(out int i) => i,
            var other => throw new ModelFormatException($"{path}: arrow_config.{field} must be an integer, found {other.ToJsonString()}"),
        };

    private static double ReadDouble(JsonObject o, string field, double fallback, string path)
        => o[field] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<double>(out double d) => d,
            var other => throw new ModelFormatException($"{path}: arrow_config.{field} must be a number, found {other.ToJsonString()}"),
        };

    private static bool ReadBool(JsonObject o, string field, bool fallback, string path)
        => o[field] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<bool>(out bool b) => b,
            var other => throw new ModelFormatException($"{path}: arrow_config.{field} must be true or false, found {other.ToJsonString()}"),
        };

    private static List<string>? ReadNames(JsonObject o, string field, string path)
        => o[field] switch
        {
            null => null,
            JsonArray array => array.Select(n => n is JsonValue v && v.TryGetValue<string>(out var s) ? s
                : throw new ModelFormatException($"{path}: arrow_config.{field} must list adapter names, found {n?.ToJsonString() ?? "null"}")).ToList(),
            var other => throw new ModelFormatException($"{path}: arrow_config.{field} must be a list of adapter names, found {other.ToJsonString()}"),
        };
}
