using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Formats;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests.Adapters;

/// <summary>
/// Test-side reader of the PEFT fixture adapters straight into a <see cref="ForwardAdapter"/> (F32 tensors
/// used in place in the memory map), so the forward routing is tested independently of the adapter library.
/// </summary>
internal sealed unsafe class FixtureAdapter : IDisposable
{
    private readonly SafeTensorsFile _file;

    public FixtureAdapter(string name, ModelConfig config)
    {
        string folder = SharedPaths.Path("fixtures", "stories260K", name);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "adapter_config.json")))!.AsObject();
        int r = json["r"]!.GetValue<int>();
        double alpha = json["lora_alpha"]!.GetValue<double>();
        float scaling = (float)(json["use_rslora"]!.GetValue<bool>() ? alpha / Math.Sqrt(r) : alpha / r);
        int[]? invocation = json["alora_invocation_tokens"] is JsonArray a ? a.Select(x => x!.GetValue<int>()).ToArray() : null;
        Adapter = new ForwardAdapter(name, config.LayerCount, invocation);
        _file = SafeTensorsFile.Open(Path.Combine(folder, "adapter_model.safetensors"));
        foreach (var info in _file.Tensors.Values.Where(t => t.Name.EndsWith("lora_A.weight", StringComparison.Ordinal)))
        {
            // base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_A.weight
            var parts = info.Name.Split('.');
            int layer = int.Parse(parts[4]);
            string module = parts[6];
            var b = _file.Tensors[info.Name.Replace("lora_A", "lora_B")];
            Adapter.Set(layer, module, new LowRankDelta(
                new WeightMatrix(_file.DataPointer(info), DType.F32, (int)info.Shape[0], (int)info.Shape[1]),
                new WeightMatrix(_file.DataPointer(b), DType.F32, (int)b.Shape[0], (int)b.Shape[1]),
                scaling));
        }
    }

    public ForwardAdapter Adapter { get; }
    public void Dispose() => _file.Dispose();

    public static JsonElement Cases(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedPaths.Path("fixtures", "stories260K", "expected.json")));
        return doc.RootElement.GetProperty("adapters").GetProperty(name).GetProperty("cases").Clone();
    }
}
