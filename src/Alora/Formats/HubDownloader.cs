using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Alora.Formats;

/// <summary>
/// Resolves a Hugging Face Hub model id ("org/name", optionally "@revision") to a local folder laid out as
/// huggingface_hub's cache does: {cache}/models--org--name/{blobs/&lt;etag&gt;, snapshots/&lt;commit&gt;/&lt;file&gt;,
/// refs/&lt;revision&gt;}, so folders downloaded by Python are reused and the reverse. Honours HF_ENDPOINT,
/// HF_HOME, HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE. Files are downloaded to a temporary name and renamed.
/// </summary>
public sealed class HubDownloader(HttpClient http, string cacheRoot, string endpoint, string? token = null)
{
    /// <summary>Files a model folder needs; weights are added from what the repository holds.</summary>
    private static readonly string[] MetadataFiles =
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json"];

    public static string DefaultCacheRoot()
    {
        string? hubCache = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
        if (!string.IsNullOrEmpty(hubCache)) return hubCache;
        string? home = Environment.GetEnvironmentVariable("HF_HOME");
        if (string.IsNullOrEmpty(home))
            home = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "huggingface");
        return Path.Combine(home, "hub");
    }

    public static HubDownloader FromEnvironment(HttpClient http)
        => new(http, DefaultCacheRoot(), Environment.GetEnvironmentVariable("HF_ENDPOINT") ?? "https://huggingface.co",
            Environment.GetEnvironmentVariable("HF_TOKEN"));

    /// <summary>True when <paramref name="text"/> looks like a Hub id rather than a local path.</summary>
    /// <summary>
    /// A local path as is; a Hugging Face Hub id ("org/name" or "org/name@revision") downloaded into (or found in)
    /// the standard Hugging Face cache, as configured by the environment (HF_HOME, HF_ENDPOINT, HF_TOKEN, …).
    /// </summary>
    public static string ResolveModelPath(string pathOrModelId)
    {
        if (!LooksLikeModelId(pathOrModelId)) return pathOrModelId;
        using var http = new HttpClient { Timeout = TimeSpan.FromHours(2) };
        return FromEnvironment(http).ResolveAsync(pathOrModelId).GetAwaiter().GetResult();
    }

    public static bool LooksLikeModelId(string text)
    {
        if (File.Exists(text) || Directory.Exists(text)) return false;
        string id = text.Split('@')[0];
        var parts = id.Split('/');
        return parts.Length == 2 && parts.All(p => p.Length > 0 && p.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            && !id.StartsWith('.') && !id.Contains("..", StringComparison.Ordinal);
    }

    /// <summary>The local snapshot folder of <paramref name="modelId"/>, downloading what is missing.</summary>
    public async Task<string> ResolveAsync(string modelId, CancellationToken cancellationToken = default)
    {
        var (repo, revision) = Split(modelId);
        string repoFolder = Path.Combine(cacheRoot, "models--" + repo.Replace("/", "--", StringComparison.Ordinal));
        bool offline = Environment.GetEnvironmentVariable("HF_HUB_OFFLINE") is "1" or "true" or "TRUE";
        if (offline) return OfflineSnapshot(repoFolder, modelId, revision);

        // config.json first: it tells us the commit the revision points at.
        string commit = await DownloadAsync(repo, revision, "config.json", repoFolder, required: true, commit: null, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException("unreachable");
        Directory.CreateDirectory(Path.Combine(repoFolder, "refs"));
        AtomicFile.WriteAllText(Path.Combine(repoFolder, "refs", revision), commit);
        foreach (string file in MetadataFiles.Skip(1))
            await DownloadAsync(repo, commit, file, repoFolder, required: false, commit, cancellationToken).ConfigureAwait(false);

        string snapshot = Path.Combine(repoFolder, "snapshots", commit);
        string? index = await DownloadAsync(repo, commit, "model.safetensors.index.json", repoFolder, required: false, commit, cancellationToken).ConfigureAwait(false);
        if (index is not null)
        {
            using var document = JsonDocument.Parse(await File.ReadAllBytesAsync(Path.Combine(snapshot, "model.safetensors.index.json"), cancellationToken).ConfigureAwait(false));
            if (!document.RootElement.TryGetProperty("weight_map", out var weightMap) || weightMap.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{modelId}: model.safetensors.index.json has no weight_map");
            foreach (string shard in weightMap.EnumerateObject().Select(p => p.Value.GetString()!).Distinct())
                await DownloadAsync(repo, commit, shard, repoFolder, required: true, commit, cancellationToken).ConfigureAwait(false);
        }
        else if (await DownloadAsync(repo, commit, "model.safetensors", repoFolder, required: false, commit, cancellationToken).ConfigureAwait(false) is null)
        {
            throw new ModelFormatException($"{modelId}: the repository has neither model.safetensors nor model.safetensors.index.json at {commit}");
        }
        return snapshot;
    }

    private static (string Repo, string Revision) Split(string modelId)
    {
        int at = modelId.IndexOf('@', StringComparison.Ordinal);
        return at < 0 ? (modelId, "main") : (modelId[..at], modelId[(at + 1)..]);
    }

    private static string OfflineSnapshot(string repoFolder, string modelId, string revision)
    {
        string reference = Path.Combine(repoFolder, "refs", revision);
        string commit = File.Exists(reference) ? File.ReadAllText(reference).Trim() : revision;
        string snapshot = Path.Combine(repoFolder, "snapshots", commit);
        if (!File.Exists(Path.Combine(snapshot, "config.json")))
            throw new FileNotFoundException($"{modelId}: HF_HUB_OFFLINE is set and the cache {repoFolder} has no snapshot for '{revision}'");
        return snapshot;
    }

    /// <summary>Downloads one file into blobs/ and links it from snapshots/&lt;commit&gt;/; returns the commit, or null when absent and optional.</summary>
    private async Task<string?> DownloadAsync(string repo, string revision, string file, string repoFolder, bool required, string? commit, CancellationToken cancellationToken)
    {
        if (commit is not null && File.Exists(Path.Combine(repoFolder, "snapshots", commit, file))) return commit;
        var url = new Uri($"{endpoint.TrimEnd('/')}/{repo}/resolve/{Uri.EscapeDataString(revision)}/{file}");
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (!string.IsNullOrEmpty(token)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound && !required) return null;
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}" +
                (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden ? " (a gated or private model: set HF_TOKEN)" : ""));
        string resolvedCommit = commit
            ?? (response.Headers.TryGetValues("X-Repo-Commit", out var commits) ? commits.First() : revision);
        string etag = (response.Headers.TryGetValues("X-Linked-Etag", out var linked) ? linked.First() : response.Headers.ETag?.Tag ?? Guid.NewGuid().ToString("N"))
            .Trim('"').Replace("W/", "", StringComparison.Ordinal).Trim('"');

        string blobs = Path.Combine(repoFolder, "blobs");
        Directory.CreateDirectory(blobs);
        string blob = Path.Combine(blobs, etag);
        if (!File.Exists(blob))
        {
            string temporary = blob + $".{Guid.NewGuid():N}.incomplete";
            try
            {
                await using (var output = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true))
                await using (var input = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false))
                {
                    await input.CopyToAsync(output, cancellationToken).ConfigureAwait(false);
                }
                if (response.Content.Headers.ContentLength is long expected && new FileInfo(temporary).Length != expected)
                    throw new IOException($"{url}: download ended after {new FileInfo(temporary).Length} of {expected} bytes");
                File.Move(temporary, blob, overwrite: true);
            }
            catch
            {
                File.Delete(temporary);
                throw;
            }
        }
        string snapshot = Path.Combine(repoFolder, "snapshots", resolvedCommit);
        string link = Path.Combine(snapshot, file);
        Directory.CreateDirectory(Path.GetDirectoryName(link)!);
        if (!File.Exists(link))
        {
            try { File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob)); }
            catch (IOException) { File.Copy(blob, link, overwrite: true); }
            catch (UnauthorizedAccessException) { File.Copy(blob, link, overwrite: true); }
        }
        return resolvedCommit;
    }
}
