"""The patient education page about muscle twitches (issue 19 section 3), served by the HTTP layer
as ``GET /education/fasciculations`` and linked from the reassurance and follow-up cards.

Why here: seed 002 calls patient education and reassurance "the cornerstone of treatment", and the
clinician needs something to hand over. Every statement comes from the seeds (the source is noted
in a comment beside it, for clinical review); the one piece of advice that does not is labelled
"General advice" on the page. The language aims at a reading age of about 12 (the test measures
the Flesch-Kincaid grade). The page is self-contained (no scripts, images, fonts or external
links) so it can be served under a strict Content-Security-Policy and printed as it is.
"""

from __future__ import annotations

SLUG = "fasciculations"

STYLE = """
:root { color-scheme: light; }
body { font: 1.125rem/1.6 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 0; }
header, main, footer { max-width: 44rem; margin: 0 auto; padding: 0 1rem; }
h1 { font-size: 1.8rem; line-height: 1.25; margin: 1.5rem 0 0.5rem; }
h2 { font-size: 1.35rem; margin: 2rem 0 0.5rem; border-bottom: 2px solid #1a5276; }
a { color: #1a5276; }
a:focus, a:hover { outline: 3px solid #f1c40f; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: #fff; padding: 0.5rem; }
.call { border: 3px solid #922b21; padding: 0.5rem 1rem; border-radius: 4px; }
.note { font-size: 1rem; color: #333; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #555; padding: 0.4rem; text-align: left; vertical-align: top; height: 2.2rem; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3rem; }
@media print {
  body { font-size: 12pt; }
  .skip, nav { display: none; }
  h2 { break-after: avoid; }
  .call, table { break-inside: avoid; }
  a { color: #000; text-decoration: none; }
}
""".strip()

# Each block: the page text, with the seed it rests on in a comment for the reviewer (not shown).
BODY = """
<a class="skip" href="#main">Skip to the main text</a>
<header>
<p class="note">Patient information</p>
<h1>Muscle twitches (fasciculations)</h1>
<nav aria-label="On this page">
<ul>
<li><a href="#what">What are they?</a></li>
<li><a href="#causes">What sets them off?</a></li>
<li><a href="#future">What will happen?</a></li>
<li><a href="#worry">Worry and twitches</a></li>
<li><a href="#treat">Do I need treatment?</a></li>
<li><a href="#call">When to call your doctor</a></li>
<li><a href="#emg">Why the muscle test is not done again</a></li>
<li><a href="#diary">Your twitch diary</a></li>
</ul>
</nav>
</header>
<main id="main">
<section aria-labelledby="what">
<h2 id="what">What are muscle twitches?</h2>
<!-- seed 004: fine movements of a small area of muscle; benign twitches often affect the eyelids,
     calf or thumb; normal and quite common -->
<p>A twitch is a small, quick jump of a small part of a muscle. You may see it under the skin or
feel it. Twitches often come in the eyelid, the calf or the thumb. They can also come and go in
many places in the body.</p>
<p>Twitches are common. Most of the time they are not caused by an illness. Doctors call this
benign, which means harmless.</p>
<!-- seed 000: fasciculations without weakness or wasting are almost certainly benign; seed 003 -->
<p>Your doctor checks your muscles and nerves to be sure. If your muscles are strong, are not
wasting away, and your reflexes are normal, the twitches are very likely to be harmless.</p>
</section>

<section aria-labelledby="causes">
<h2 id="causes">What sets twitches off?</h2>
<!-- seed 004: often triggered by stress or anxiety; exercise; a diet deficiency; drug side effects
     (such as diuretics, corticosteroids and estrogens); seed 000: often begins during stress -->
<ul>
<li>Stress and worry. Twitches often start at a time of stress.</li>
<li>Exercise.</li>
<li>Not getting enough of some things in your diet.</li>
<li>Some medicines, such as water tablets, steroid tablets and estrogen.</li>
</ul>
<p class="note"><strong>General advice</strong> (not from the sources this page is based on): do not
stop a medicine on your own. Talk to your doctor first.</p>
</section>

<section aria-labelledby="future">
<h2 id="future">What will happen?</h2>
<!-- seed 002: persist in 93-98 %; improve in about 52 %; no patient developed motor neuron disease
     in follow-up of 8 months to several years; seed 002: progression only in isolated case reports;
     seed 000: follow-up at 6 months -->
<p>Harmless twitches often last a long time. In studies, they were still there for 93 to 98 out of
every 100 people. But they got better for about half of them.</p>
<p>In these studies, people were followed for 8 months to a few years. None of them got motor
neuron disease (also called ALS). A change to ALS has been reported only in a few single cases.
That is why your doctor may still want to see you again, for example after 6 months.</p>
</section>

<section aria-labelledby="worry">
<h2 id="worry">Worry and twitches</h2>
<!-- seed 000: the fear of having ALS perpetuates symptoms; screen and treat anxiety and depression -->
<p>Many people with twitches fear they have ALS. This fear is normal. But fear and stress can keep
the twitches going.</p>
<p>If you feel very worried, low or down, tell your doctor. Help is there for this, and it can
also ease the twitches.</p>
</section>

<section aria-labelledby="treat">
<h2 id="treat">Do I need treatment?</h2>
<!-- seed 004: usually no treatment necessary; seed 002: most patients do not need medicine;
     medicine only for persistent, bothersome twitches -->
<p>Most people need no treatment. Knowing that the twitches are harmless is the main help.</p>
<p>If the twitches really bother you and do not go away, talk to your doctor. There are medicines
that can help some people.</p>
<!-- seed 003: magnesium from nuts (almonds), bananas, spinach; knowledge.md: low evidence -->
<p>Some doctors suggest food with a lot of magnesium, such as nuts (like almonds), bananas and
spinach. There is little proof that this helps.</p>
</section>

<section aria-labelledby="call">
<h2 id="call">When to call your doctor</h2>
<!-- seed 000: come back with weakness, wasting, difficulty swallowing, change in speech (repeat EMG
     only then); seed 000: sudden onset with new neurological deficits is an emergency;
     seed 004: call if twitches are prolonged or persistent -->
<div class="call">
<p><strong>Call your doctor soon if you notice:</strong></p>
<ul>
<li>a muscle that gets weak, for example you trip, drop things or find it hard to climb stairs</li>
<li>a muscle that gets thin or smaller</li>
<li>trouble when you swallow</li>
<li>a change in how you speak</li>
<li>twitches that change, spread, or worry you</li>
</ul>
<p><strong>Get help at once (call an ambulance)</strong> if weakness, numbness or trouble with
speech comes on all of a sudden.</p>
</div>
</section>

<section aria-labelledby="emg">
<h2 id="emg">Why the muscle test is not done again</h2>
<!-- seed 000: do not order routine repeat EMG in stable BFS - reinforces anxiety, no added value
     when the exam remains normal; repeat EMG only if new symptoms develop -->
<p>Some people have a test of the muscles and nerves, called an EMG. If your muscles stay strong,
the test is not done again. A new test would not tell your doctor anything new. It can also make
the worry worse. It is only done again if new problems start, like the ones in the list above.</p>
</section>

<section aria-labelledby="diary">
<h2 id="diary">Your twitch diary</h2>
<!-- seed 004: when first noticed, how long, how often, which muscles, same place, other symptoms;
     seed 000: location, frequency and duration -->
<p>Writing things down helps your doctor. Take this page with you to your next visit.</p>
<p>When did you first notice the twitches? ____________________</p>
<table>
<caption>Twitch diary</caption>
<thead>
<tr><th scope="col">Date</th><th scope="col">Where in the body</th><th scope="col">How long</th>
<th scope="col">How often</th><th scope="col">Anything else you felt</th></tr>
</thead>
<tbody>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
<tr><td></td><td></td><td></td><td></td><td></td></tr>
</tbody>
</table>
</section>
</main>
<footer>
<p class="note">This page gives general facts. It does not replace advice from your own doctor.
It is based on the clinical sources behind this decision support service.</p>
</footer>
""".strip()


def page(_base: str = "") -> str:
    """The page as one self-contained HTML document (the style is inline; the HTTP layer allows
    exactly that style by its hash in the Content-Security-Policy)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Muscle twitches (fasciculations): patient information</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n{BODY}\n</body>\n</html>\n"
    )
