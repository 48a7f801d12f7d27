using System.Text.RegularExpressions;
using Microsoft.Playwright;

namespace Alora.Tests.Server;

/// <summary>
/// The chat page at / in headless Chromium (Debian's chromium, driven by Playwright): a base turn, then an aLoRA
/// turn picked in the adapter list, each reply streamed and showing its cached tokens and TTFT. The test writes
/// a screenshot (tests/Alora.Tests/bin/…/screenshots/chat-page.png).
/// </summary>
public sealed partial class ChatPageTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    public const string ChromiumPath = "/usr/bin/chromium";

    [GeneratedRegex(@"(?<prompt>\d+) prompt tokens, (?<cached>\d+) cached · TTFT (\d+|–) ms · (?<generated>\d+) tokens")]
    private static partial Regex Stats();

    [Fact]
    public async Task ABaseTurnThenAnAloraTurnStreamAndShowTheirReuse()
    {
        Assert.True(File.Exists(ChromiumPath), $"{ChromiumPath} is missing: install Debian's chromium package (test.sh does, through tools/install-test-deps.sh)");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            Timeout = 60_000,
        });
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1000, Height = 700 } });
        await page.GotoAsync(server.BaseAddress.ToString());
        await page.WaitForSelectorAsync("#model option[value='qa']", new PageWaitForSelectorOptions { State = WaitForSelectorState.Attached });

        await page.SelectOptionAsync("#model", ServerFixture.BaseName);
        await page.FillAsync("#input", "Lily had a red ball. She liked to play with it every day in the big park.");
        await page.ClickAsync("#send");
        var firstStats = page.Locator(".assistant .stats").Nth(0);
        await firstStats.WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });

        await page.SelectOptionAsync("#model", "qa");
        await page.FillAsync("#input", "What did Lily have?");
        await page.PressAsync("#input", "Enter");
        var secondStats = page.Locator(".assistant .stats").Nth(1);
        await secondStats.WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });

        var first = Stats().Match(await firstStats.InnerTextAsync());
        var second = Stats().Match(await secondStats.InnerTextAsync());
        Assert.True(first.Success && second.Success, $"stats lines: '{await firstStats.InnerTextAsync()}', '{await secondStats.InnerTextAsync()}'");
        Assert.True(int.Parse(second.Groups["cached"].Value) >= 16, "the aLoRA turn reuses the base turn's blocks");
        Assert.False(string.IsNullOrWhiteSpace(await page.Locator(".assistant .text").Nth(1).InnerTextAsync()));
        Assert.Equal(2, await page.Locator(".user").CountAsync());

        string folder = Path.Combine(AppContext.BaseDirectory, "screenshots");
        Directory.CreateDirectory(folder);
        string shot = Path.Combine(folder, "chat-page.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        Assert.True(new FileInfo(shot).Length > 1000);
    }
}
