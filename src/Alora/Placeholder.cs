namespace Alora; internal static class Placeholder {}
