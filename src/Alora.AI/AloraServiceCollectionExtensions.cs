using Alora.Serving;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace Alora.AI;

/// <summary>What <see cref="AloraServiceCollectionExtensions.AddAloraChatClient"/> loads.</summary>
public sealed class AloraChatClientOptions
{
    /// <summary>A Hugging Face folder, a .gguf file or a Hub id.</summary>
    public string ModelPath { get; set; } = "";
    /// <summary>PEFT adapter folders by the name a request's ModelId uses.</summary>
    public IDictionary<string, string> Adapters { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
    public string? ChatTemplatePath { get; set; }
    /// <summary>The ModelId of the base model (default: the model path).</summary>
    public string? BaseModelName { get; set; }
    public EngineOptions Engine { get; set; } = new();
}

public static class AloraServiceCollectionExtensions
{
    /// <summary>
    /// Registers a singleton <see cref="LanguageModel"/> (loaded on first use, disposed with the container) and an
    /// <see cref="IChatClient"/> over it, through Microsoft.Extensions.AI's builder so middleware can be added.
    /// </summary>
    public static ChatClientBuilder AddAloraChatClient(this IServiceCollection services, Action<AloraChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new AloraChatClientOptions();
        configure(options);
        if (string.IsNullOrEmpty(options.ModelPath)) throw new ArgumentException("AloraChatClientOptions.ModelPath is required", nameof(configure));
        services.AddSingleton(_ =>
        {
            var model = LanguageModel.Load(options.ModelPath, engineOptions: options.Engine);
            try
            {
                foreach (var (name, path) in options.Adapters) model.LoadAdapter(name, path);
                return model;
            }
            catch { model.Dispose(); throw; }
        });
        return services.AddChatClient(provider => new AloraChatClient(provider.GetRequiredService<LanguageModel>(), options.ChatTemplatePath, options.BaseModelName));
    }
}
