using System.Security.Cryptography;
using Alora.Formats;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Alora.Tests.Formats;

/// <summary>Hub-id loading against a local fake Hub that serves stories260K the way huggingface.co does.</summary>
public sealed class HubDownloaderTests
{
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";

    private static async Task<(WebApplication App, string Endpoint, List<string> Requests)> StartFakeHub()
    {
        var requests = new List<string>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        app.MapGet("/{org}/{name}/resolve/{revision}/{**file}", async (HttpContext context, string org, string name, string revision, string file) =>
        {
            lock (requests) requests.Add($"{org}/{name}@{revision}:{file}");
            if (org != "karpathy" || name != "stories260K" || (revision != "main" && revision != Commit)) return Results.NotFound();
            if (context.Request.Headers.Authorization != "Bearer secret") return Results.StatusCode(401);
            string path = Path.Combine(SharedPaths.Stories260K, file);
            if (!File.Exists(path)) return Results.NotFound();
            byte[] bytes = await File.ReadAllBytesAsync(path);
            context.Response.Headers["X-Repo-Commit"] = Commit;
            context.Response.Headers.ETag = "\"" + Convert.ToHexStringLower(SHA256.HashData(bytes)) + "\"";
            return Results.Bytes(bytes, "application/octet-stream");
        });
        await app.StartAsync();
        return (app, app.Urls.First(), requests);
    }

    [Fact]
    public async Task DownloadsIntoTheHuggingFaceCacheLayoutAndLoads()
    {
        var (app, endpoint, requests) = await StartFakeHub();
        await using var _ = app;
        using var temp = new TempFolder();
        using var http = new HttpClient();
        var hub = new HubDownloader(http, temp.Path, endpoint, token: "secret");

        Assert.True(HubDownloader.LooksLikeModelId("karpathy/stories260K"));
        Assert.False(HubDownloader.LooksLikeModelId(SharedPaths.Stories260K));
        string snapshot = await hub.ResolveAsync("karpathy/stories260K");

        string repo = Path.Combine(temp.Path, "models--karpathy--stories260K");
        Assert.Equal(Path.Combine(repo, "snapshots", Commit), snapshot);
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        Assert.True(new FileInfo(Path.Combine(snapshot, "model.safetensors")).LinkTarget is not null, "snapshot files link into blobs/");
        Assert.Equal(File.ReadAllBytes(Path.Combine(SharedPaths.Stories260K, "model.safetensors")), File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Empty(Directory.GetFiles(Path.Combine(repo, "blobs"), "*.incomplete"));

        using (var model = LanguageModel.Load(snapshot, cacheTokens: 64))
            Assert.Equal([1, 403, 407, 261, 378], model.Encode("Once upon a time"));

        // A second resolve finds everything cached: only config.json is asked for (to learn the commit).
        int before = requests.Count;
        Assert.Equal(snapshot, await hub.ResolveAsync("karpathy/stories260K"));
        Assert.Equal(["karpathy/stories260K@main:config.json"], requests.Skip(before).Where(r => !r.Contains("@" + Commit, StringComparison.Ordinal)));
    }

    [Fact]
    public async Task MissingModelsAndBadTokensAreReported()
    {
        var (app, endpoint, _) = await StartFakeHub();
        await using var _1 = app;
        using var temp = new TempFolder();
        using var http = new HttpClient();
        var e = await Assert.ThrowsAsync<HttpRequestException>(() => new HubDownloader(http, temp.Path, endpoint, "secret").ResolveAsync("nobody/nothing"));
        Assert.Contains("404", e.Message);
        e = await Assert.ThrowsAsync<HttpRequestException>(() => new HubDownloader(http, temp.Path, endpoint, "wrong").ResolveAsync("karpathy/stories260K"));
        Assert.Contains("HF_TOKEN", e.Message);
    }
}
