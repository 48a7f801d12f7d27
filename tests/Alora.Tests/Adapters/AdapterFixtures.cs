using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Models;

namespace Alora.Tests.Adapters;

/// <summary>Paths and helpers for the stories260K PEFT adapters in shared/fixtures.</summary>
internal static class AdapterFixtures
{
    public static string Folder => SharedPaths.Path("fixtures", "stories260K");
    public static string LoraAll => System.IO.Path.Combine(Folder, "lora-all");
    public static string AloraQkv => System.IO.Path.Combine(Folder, "alora-q-k-v");

    public static ModelConfig BaseConfig() => ModelConfig.FromFile(System.IO.Path.Combine(SharedPaths.Stories260K, "config.json"));

    public static JsonElement Expected(string adapter)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(Folder, "expected.json")));
        return doc.RootElement.GetProperty("adapters").GetProperty(adapter).Clone();
    }

    /// <summary>A copy of a fixture adapter folder whose adapter_config.json <paramref name="edit"/> may change.</summary>
    public static string CopyAdapter(TempFolder temp, string source, Action<JsonObject>? edit = null, string name = "adapter")
    {
        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.Copy(System.IO.Path.Combine(source, LoraAdapter.WeightsFileName), System.IO.Path.Combine(folder, LoraAdapter.WeightsFileName));
        var json = JsonNode.Parse(File.ReadAllText(System.IO.Path.Combine(source, LoraAdapter.ConfigFileName)))!.AsObject();
        edit?.Invoke(json);
        File.WriteAllText(System.IO.Path.Combine(folder, LoraAdapter.ConfigFileName), json.ToJsonString());
        return folder;
    }

    public static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    public static float[] Floats2D(JsonElement rows) => rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(e => e.GetSingle())).ToArray();

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = MathF.Max(max, MathF.Abs(a[i] - b[i]));
        return max;
    }
}
