using System.Text.Json;
using System.Text.RegularExpressions;
using Alora;
using Alora.Inference;

namespace StoryIntrinsics;

/// <summary>
/// Training data for the stories260K intrinsics, made from the base model's own stories (as bench's intrinsic
/// experiment does): each story that mentions one of <see cref="Nouns"/> gives a question about a noun it
/// mentions and one about a noun it does not. The prompt is the story as the chat template renders the
/// conversation (opener + continuation), then the intrinsic's instruction; labels come from the text.
/// </summary>
public static partial class StoryData
{
    public static readonly string[] Openers = ["Once upon a time", "One day", "Lily was", "Tom had", "There was a", "The little", "Sam and", "In the park", "A big", "Mom said"];
    public static readonly string[] Nouns = ["dog", "cat", "ball", "tree", "bird", "park", "car", "fish", "cake", "boat", "sun", "toy"];

    /// <summary>Whether <paramref name="noun"/> (or its plural) appears in <paramref name="story"/> as a word.</summary>
    public static bool Mentions(string story, string noun) => Regex.IsMatch(story, $@"\b{Regex.Escape(noun)}s?\b", RegexOptions.IgnoreCase);

    /// <summary>Writes answerability.jsonl (completion " \"yes\"" / " \"no\"") and certainty.jsonl (" 9" / " 0") into <paramref name="folder"/>; returns the number of questions.</summary>
    public static async Task<int> WriteAsync(LanguageModel model, string folder, int stories, int storyTokens = 60, int seed = 7)
    {
        Directory.CreateDirectory(folder);
        var generator = model.CreateGenerator();
        var random = new Random(seed);
        var answerability = new List<string>();
        var certainty = new List<string>();
        for (int i = 0; i < stories; i++)
        {
            string opener = Openers[i % Openers.Length];
            using var sequence = model.NewSequence();
            var request = new GenerationRequest
            {
                PromptIds = model.Encode(opener),
                MaxTokens = storyTokens,
                Sampling = new SamplingOptions { Temperature = 1.0f, TopK = 0, TopP = 0.95f, MinP = 0, Seed = (ulong)(seed * 1000 + i) },
            };
            var text = new System.Text.StringBuilder(opener);
            await foreach (var update in generator.GenerateAsync(request, sequence)) text.Append(update.Text);
            string story = text.ToString();
            var present = Nouns.Where(n => Mentions(story, n)).ToList();
            var absent = Nouns.Except(present).ToList();
            if (present.Count == 0 || absent.Count == 0) continue;
            foreach (var (noun, yes) in new[] { (present[random.Next(present.Count)], true), (absent[random.Next(absent.Count)], false) })
            {
                answerability.Add(JsonSerializer.Serialize(new { prompt = $"{story}\nQ: Does a {noun} appear?\nA:", completion = yes ? " \"yes\"" : " \"no\"" }));
                certainty.Add(JsonSerializer.Serialize(new { prompt = $"{story}\nQ: How sure are you that a {noun} appears?\nA:", completion = yes ? " 9" : " 0" }));
            }
        }
        await File.WriteAllLinesAsync(Path.Combine(folder, "answerability.jsonl"), answerability);
        await File.WriteAllLinesAsync(Path.Combine(folder, "certainty.jsonl"), certainty);
        return answerability.Count;
    }
}
