"""Build the xaimesh sample emotion corpus.

Every sentence in this file was written for xaimesh by its authors. The corpus
is made of two parts:

* ``HANDWRITTEN``: complete sentences, written one by one;
* composed sentences: short templates filled from hand-written fragment pools
  (feeling words, causes, reactions, time expressions, intensifiers). Each
  emotion has a few pools so that a feeling word is only ever combined with
  causes it fits (``relieved`` goes with good news after a worry, not with
  concert tickets).

The output is reproducible: a fixed seed, no dependence on dict ordering or
the environment. Run from the repository root::

    python data/make_emotions.py            # writes the canonical files
    python data/make_emotions.py --check    # regenerates in memory, diffs

Style of the corpus: lowercase, first person, no final punctuation,
apostrophes kept, 5 to 30 words.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

SEED = 20240611
LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")

# How many texts each label gets in the full file (hand-written + composed).
TARGETS = {"sadness": 186, "joy": 190, "love": 160, "anger": 170, "fear": 162, "surprise": 146}
SMALL_PER_LABEL = 20
MIN_WORDS, MAX_WORDS = 5, 30
MAX_USES_PER_CAUSE = 2

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "clients" / "python" / "xaimesh" / "data"

# --------------------------------------------------------------------------
# Hand-written sentences
# --------------------------------------------------------------------------

HANDWRITTEN: dict[str, list[str]] = {
    "sadness": [
        "i feel so lonely since my roommate moved back home",
        "i miss the way the house sounded when everyone still lived here",
        "some nights i just sit in the dark and feel completely empty",
        "i cried in the parking lot after my last shift at the bakery",
        "my dog passed away this morning and the house feels so quiet",
        "i keep scrolling through old messages and feeling worse every time",
        "nobody remembered my birthday this year and i'm trying not to care",
        "i feel like i'm always the one who reaches out first",
        "the rain matches my mood today and i can't seem to shake this sadness",
        "i failed the exam again even after studying every night for a month",
        "i feel homesick every time i smell cinnamon because it reminds me of my mom's kitchen",
        "i'm honestly a little heartbroken that the show i grew up with is finally over",
        "i haven't felt like myself in weeks and i don't know how to explain it",
        "everyone else seems to be moving forward while i'm stuck in the same place",
        "i sat alone at lunch again and pretended to read my phone",
        "it hurts to see my grandfather forget my name",
        "i feel so defeated after another week of job rejections",
        "the holidays are hard when there's an empty chair at the table",
        "i gave that relationship everything and it still fell apart",
        "my best friend and i don't really talk anymore and i miss her a lot",
        "i woke up feeling heavy and it hasn't lifted all day",
        "i packed up my childhood bedroom today and it made me unbearably sad",
        "i feel like a disappointment to my parents lately",
        "the garden my grandmother planted is overgrown now and it breaks my heart",
        "i didn't get picked for the team and i walked home feeling small",
        "it's been a year since the move and i still don't have anyone to call",
        "i feel invisible in group chats where nobody answers my messages",
        "i'm tired of pretending i'm fine when i'm not",
        "i said goodbye to my favorite teacher today and i couldn't hold back the tears",
        "my little brother left for college and his room is so empty now",
        "i feel gloomy whenever the days get this short",
        "my plants all died while i was away and somehow that made me cry",
        "i miss being a kid when everything felt simple",
        "the letter said they had chosen another candidate and my heart just sank",
        "i feel so low today that even getting dressed took effort",
        "my old neighborhood cafe closed down and it feels like losing a piece of my childhood",
        "i spent the whole weekend alone and barely spoke to anyone",
        "i can't stop thinking about what i could have done differently",
        "it's strange how a song can make you miss someone you haven't seen in years",
        "i feel like i let my whole team down today",
        "my grandmother's handwriting on an old recipe card made me tear up",
        "i feel hopeless about ever finding a place that feels like home",
        "the friendship ended quietly and somehow that hurts even more",
        "i was so disappointed when the concert got cancelled after months of waiting",
        "i feel drained and sad and i don't even know why",
        "our family dog is getting old and slow and it makes me so sad to watch",
        "i keep setting the table for two out of habit",
        "i feel like my messages just disappear into the void lately",
        "i had to give away my cat because of the new lease and i miss him terribly",
        "the house we grew up in was sold today and i couldn't bring myself to drive past it",
        "everyone posted photos from the trip i couldn't afford to go on",
        "i feel so alone in this new city",
        "it's my first winter without my dad and it's harder than i expected",
        "i tried to call my sister but she was too busy again",
        "i feel regretful about all the times i chose work over my friends",
        "my favorite sweater shrank in the wash and honestly it was the last straw today",
        "i feel sad seeing the old playground fenced off for demolition",
        "i stood at the bus stop in the rain feeling sorry for myself",
        "i feel a heaviness in my chest whenever i think about last summer",
        "i got the news about the layoffs and spent the afternoon staring at the wall",
    ],
    "joy": [
        "i was thrilled when the results came in and i had passed every module",
        "i finally finished my first marathon and i can't stop smiling",
        "the sun came out just as we reached the top of the hill and it was perfect",
        "i feel so happy when my morning coffee is exactly right",
        "i got the job and i'm still jumping around the living room",
        "my little nephew said his first word today and everyone cheered",
        "i feel so content sitting on the porch with a good book",
        "we won the pub quiz by a single point and i'm still buzzing",
        "i baked bread from scratch for the first time and it actually rose",
        "i feel proud of myself for sticking to my running plan all month",
        "today was one of those rare days where everything went right",
        "i am delighted with how the garden turned out this year",
        "i laughed so hard at dinner that my cheeks still hurt",
        "the first snow of the year always makes me giddy",
        "i passed my driving test on the first try",
        "i feel so relieved and happy now that the move is finally done",
        "my paintings sold out at the local craft fair",
        "i feel cheerful after a long walk by the river",
        "we got tickets to the festival and i'm counting down the days",
        "i feel grateful for a quiet sunday with nothing on the calendar",
        "my tomatoes are finally ripening and i'm ridiculously pleased about it",
        "i got an unexpected bonus at work and treated myself to a fancy dinner",
        "i feel energized after a good night's sleep for once",
        "the whole class clapped after my presentation",
        "i found my favorite childhood book at a secondhand shop",
        "i feel so excited about starting my new course next week",
        "my friends threw a little picnic for me and it made my week",
        "i finally fixed the leaking tap myself and i feel like a genius",
        "i feel joyful listening to the birds outside my window this morning",
        "our team shipped the project on time and everyone went out for ice cream",
        "i got a handwritten thank you note from a student and i'm glowing",
        "i feel so cheerful when the kitchen smells of fresh pancakes",
        "we adopted a puppy today and he's already asleep on my feet",
        "the doctor said everything looks great and i walked out grinning",
        "i feel satisfied after clearing out the whole garage",
        "i danced around the kitchen when the acceptance email arrived",
        "i feel blissfully lazy on this rainy afternoon with tea and a blanket",
        "i hit a new personal best at the pool today",
        "i feel amazing after the yoga class this morning",
        "my sister is getting married and she asked me to be her maid of honor",
        "i feel like a kid again every time we go to the beach",
        "i finally understood the math problem i'd been stuck on for days",
        "i'm so glad i took the long way home because the sunset was incredible",
        "i feel happy and light after talking things through with my brother",
        "our little band played its first real gig and people actually danced",
        "i feel ecstatic because my visa was approved",
        "the bakery had my favorite pastry this morning and i took it as a sign",
        "i feel optimistic about this year for the first time in ages",
        "we finished the puzzle at midnight and cheered like we had won a prize",
        "i feel delighted whenever a stranger smiles back at me on the street",
        "my grandmother beat all of us at cards and was so pleased with herself",
        "i'm over the moon about the new apartment",
        "i got through the whole week without missing a single workout",
        "i feel cheerful and ready for whatever today brings",
        "the kids spent the whole afternoon building a snowman and i enjoyed every minute",
        "i feel so pleased that my homemade soup turned out well",
        "i finally paid off my student loan and i feel free",
        "i feel wonderful after a weekend away from screens",
        "my dad learned to video call and we talked for an hour",
        "i feel lucky and happy to have had such a good week",
    ],
    "love": [
        "i feel so loved when my partner leaves little notes in my lunch bag",
        "i adore the way my grandmother hums while she cooks",
        "my daughter fell asleep on my shoulder and i didn't want to move",
        "i feel tender watching my dog sleep with his paws twitching",
        "every time he laughs at my terrible jokes i fall for him a little more",
        "i feel so cherished when my friends remember the small things",
        "i love how my mom still calls to ask if i've eaten",
        "holding my newborn niece for the first time made my heart melt",
        "i feel affectionate toward everyone in this tiny little town",
        "he brought me soup when i was sick and sat with me all evening",
        "i feel warm all over when she says my name like that",
        "my best friend drove three hours just to have breakfast with me",
        "i feel so lucky to wake up next to someone so kind",
        "we've been married twenty years and i still get butterflies",
        "i feel a deep fondness for the old couple who run the corner shop",
        "my little brother made me a bracelet and i wear it every day",
        "i feel so romantic when we dance in the kitchen after dinner",
        "i love the way our cat greets me at the door every evening",
        "i feel protective and tender toward my younger cousins",
        "my partner learned my favorite song on guitar just to play it for me",
        "i feel sentimental looking at the photos from our first trip together",
        "my grandfather still holds my grandmother's hand when they cross the street",
        "i feel so adored when my kids run to hug me after school",
        "i want to give my best friend the world after everything she's done for me",
        "i feel nostalgic and fond thinking about summers at my aunt's farm",
        "she remembered how i take my tea after only meeting me once",
        "i feel so caring toward my students when they try their hardest",
        "i can't stop thinking about the way he looked at me tonight",
        "my mom kept every drawing i ever made and i found them in a box today",
        "i feel sweet on the guy from the library and i think he knows it",
        "the way my dad talks about my mom after all these years makes me believe in love",
        "i feel devoted to this little family we've built together",
        "i feel so loving toward my friends after our weekend away",
        "my partner stayed up all night helping me finish my portfolio",
        "i feel tender whenever my son asks me to read him one more story",
        "my sister wrote me a letter that i will keep forever",
        "i feel supported and loved by the people around me",
        "our first date was in the rain and i still think about it every time it pours",
        "i feel so fond of the neighbor's kids who wave at me every morning",
        "i love how my roommate always saves me the last slice of pizza",
        "i feel romantic when we cook dinner together with music playing",
        "my grandma knitted me a scarf even though her hands hurt",
        "i feel hopelessly in love and i don't mind one bit",
        "i feel such affection for the friends who stayed when things got hard",
        "he kissed my forehead before leaving for work and i smiled all day",
        "i feel loved every time my dog rests his head on my knee",
        "i keep his old hoodie because it still smells like him",
        "my friends know exactly how to make me feel cared for on a bad day",
        "i feel gentle and warm whenever i hold my baby cousin",
        "i love that my parents still dance in the living room",
        "i feel compassionate toward the new kid who sits alone at lunch",
        "she held my hand through the whole scary movie and i didn't mind at all",
        "i feel so grateful and loving toward my grandmother today",
        "we wrote each other letters all summer and i kept every single one",
        "i feel a rush of tenderness when my partner falls asleep mid sentence",
        "i feel close to my brother again after our long talk last night",
        "my best friend knows me better than i know myself and i treasure that",
        "i feel so loved when my little sister saves me a seat",
    ],
    "anger": [
        "i am so angry that my landlord ignored the broken heater for another week",
        "someone took my lunch from the office fridge again",
        "i feel irritated when people talk through the whole movie",
        "the bus driver drove right past me even though i was waving",
        "i spent an hour on hold only to be disconnected",
        "my coworker took credit for my idea in front of the whole team",
        "i feel furious about the way they treated my little brother",
        "i'm fed up with cleaning up after roommates who never say thank you",
        "the neighbors played loud music until three in the morning again",
        "i feel so annoyed when people cancel plans at the last minute",
        "the airline lost my luggage and then blamed me for it",
        "i hate being interrupted every time i try to speak in meetings",
        "i feel resentful that i always end up doing the group project alone",
        "someone scratched my car in the parking lot and just drove away",
        "i'm livid that the repair shop charged me twice for the same part",
        "my brother borrowed my laptop and returned it with a cracked screen",
        "i feel bitter about the promotion that went to the manager's friend",
        "the internet went down right in the middle of my exam",
        "i'm so frustrated with this printer that i could throw it out the window",
        "people who cut in line make my blood boil",
        "i feel agitated after arguing with customer support for the third time today",
        "my roommate ate the cake i made for my mom's birthday",
        "i told them three times and they still got my order wrong",
        "i feel cranky and short tempered after no sleep",
        "i can't believe they raised the rent again without fixing anything",
        "he keeps leaving passive aggressive notes on the fridge",
        "i feel outraged that the park is being paved over for a parking lot",
        "my package was marked delivered but it never showed up",
        "i'm angry at myself for trusting them again",
        "the referee's call was ridiculous and cost us the whole game",
        "i feel so irritated by the constant work messages on weekends",
        "my friend shared my secret with the whole group",
        "i waited two hours at the clinic and they forgot to call my name",
        "i feel hostile toward anyone who honks in a traffic jam",
        "they changed the deadline without telling anyone and then blamed us",
        "i'm sick of being treated like i'm invisible at work",
        "i feel mad that nobody listened when i warned them",
        "the new update deleted all my saved notes",
        "my neighbor's dog barks every time i step outside and she just laughs",
        "i feel insulted by the lowball offer they sent me",
        "i slammed my laptop shut after reading that rude email",
        "someone parked across my driveway and i was late for work",
        "i feel annoyed that i have to repeat myself every single time",
        "the contractor disappeared with our deposit",
        "i feel so frustrated when my hard work goes unnoticed",
        "my sister read my diary and laughed about it with her friends",
        "i feel grumpy and snappy today and everyone is getting on my nerves",
        "the store refused my refund even though i had the receipt",
        "i'm furious that the meeting could have been an email",
        "my teammate skipped practice again and we lost because of it",
        "i feel enraged every time i see rubbish dumped in the river",
        "they promised a callback and never bothered to call",
        "i feel irritable because the construction outside starts at six every morning",
        "i had to redo the entire report because someone overwrote my file",
        "i'm angry that i let them talk me into this",
        "i feel spiteful and i don't like it but they really hurt me",
        "the cashier rolled her eyes at me for paying in coins",
        "i feel so heated after that argument that i had to go for a walk",
    ],
    "fear": [
        "i heard footsteps behind me on the way home and my heart started racing",
        "i feel so nervous about my first day at the new job tomorrow",
        "the house creaks at night and i can't sleep",
        "i'm terrified of the dentist appointment on friday",
        "i feel anxious every time my phone rings with an unknown number",
        "the turbulence on the flight had me gripping the armrest the whole time",
        "i'm scared that i won't pass the final exam",
        "i feel uneasy walking through the parking garage alone",
        "the doctor wants to run more tests and i can't stop worrying",
        "i froze when the spider dropped down right in front of my face",
        "i feel afraid of disappointing everyone who believes in me",
        "the storm knocked out the power and every sound made me jump",
        "i'm nervous about giving my speech at the wedding",
        "i feel shaky and panicky before every presentation",
        "i keep checking that the door is locked even though i know it is",
        "i'm worried sick because my brother still hasn't called back",
        "i feel frightened by how fast the river is rising",
        "the ice on the road made every turn feel dangerous",
        "i'm scared of being left behind while everyone else moves on",
        "i feel tense waiting for the results of the interview",
        "i had a nightmare that i was lost in a huge building and woke up sweating",
        "i feel apprehensive about moving to a country where i don't speak the language",
        "the smoke alarm went off in the middle of the night and i panicked",
        "i'm afraid to open the email from my professor",
        "i feel so vulnerable walking home after dark",
        "i can't shake the feeling that something bad is about to happen",
        "i feel jumpy after watching that horror movie",
        "my hands were trembling as i waited outside the manager's office",
        "i'm scared of heights and the glass bridge was a nightmare",
        "i feel insecure about speaking up in class",
        "the elevator stopped between floors and i started to panic",
        "i feel nervous that i'll say the wrong thing at the family dinner",
        "there was a strange noise downstairs and i didn't dare move",
        "i feel worried about my grandmother living alone",
        "i'm terrified that i made a huge mistake quitting my job",
        "i feel on edge whenever my boss calls me into a meeting",
        "the dog next door lunged at the fence and i nearly screamed",
        "i feel paranoid that everyone can tell how nervous i am",
        "i'm afraid of the dark hallway at my grandparents' house",
        "i feel anxious about the bills piling up on the table",
        "the wave pulled me under for a second and i was so scared",
        "i feel restless and afraid the night before surgery",
        "i'm frightened of driving on the highway after the accident",
        "i feel scared every time the baby coughs at night",
        "i was shaking before i walked on stage",
        "i feel uncertain and afraid about what comes after graduation",
        "the hike got dark faster than we expected and i started to panic",
        "i feel so timid around new people that i barely speak",
        "i'm nervous about telling my parents that i changed my major",
        "i feel threatened by the way the man on the train kept staring",
        "a car swerved into my lane and my heart is still pounding",
        "i feel hesitant to go back to the gym after getting hurt there",
        "i'm worried that the layoffs will reach our team next",
        "i feel afraid of losing the people i love",
        "the lights flickered in the empty office and i ran to the exit",
        "i feel reluctant and scared to go to the follow up appointment",
        "i panicked when i couldn't find my little sister in the crowd",
        "i feel nervous just thinking about the job interview next week",
    ],
    "surprise": [
        "i was stunned when my quiet neighbor turned out to be a touring drummer",
        "i couldn't believe it when my old teacher recognized me after fifteen years",
        "i feel amazed by how quickly the kids picked up the new language",
        "i opened the door and all my friends shouted happy birthday",
        "i was shocked to find out the restaurant had closed overnight",
        "i feel curious about the strange lights we saw over the lake last night",
        "my sister showed up at my door without telling anyone she was back in town",
        "i was completely taken aback when my boss offered me a raise out of nowhere",
        "i feel astonished that the tiny seed grew into such a huge sunflower",
        "the quiet kid from class won the national science prize",
        "i was amazed to see snow in the middle of april",
        "i feel impressed by how much my little brother has grown up this year",
        "i never expected the cheapest wine at the party to taste that good",
        "the plot twist at the end of the book left me speechless",
        "i was startled by a deer standing in the middle of the road",
        "i feel dazed after learning i won a raffle i forgot i had entered",
        "my grandfather casually mentioned he used to sing in a band",
        "i was shocked at how cheap the flights were",
        "i feel amazed that the old car made it all the way to the coast",
        "a stranger paid for my coffee and walked off before i could thank her",
        "i was surprised to get a letter from a friend i hadn't heard from in years",
        "the exam was nothing like what we studied for",
        "i feel stunned that the whole team agreed with me for once",
        "my shy cousin got up and sang karaoke in front of everyone",
        "i was surprised by how calm i felt during the interview",
        "i feel astounded by the size of the waves today",
        "the package i ordered arrived three weeks early",
        "i didn't expect my parents to know all the words to that song",
        "i was amazed when the magician pulled my ring out of a lemon",
        "i feel curious to see what the new neighbors are building in their yard",
        "out of nowhere my roommate announced she is moving to iceland",
        "i was shocked to see my own photo in the local newspaper",
        "i feel surprised that i actually enjoyed the opera",
        "the fortune cookie was weirdly accurate about my week",
        "i found an old twenty dollar bill in a coat i hadn't worn in years",
        "i was startled when the cat jumped onto my keyboard in the middle of a call",
        "i feel overwhelmed with surprise after my colleagues threw me a farewell party",
        "i had no idea my best friend could speak fluent japanese",
        "i was stunned to learn the bakery down the street had been there for a hundred years",
        "i feel impressed that the little cafe remembered my order after one visit",
        "the forecast was wrong and we got a perfectly sunny day instead",
        "my quiet uncle turned out to be the funniest person at the wedding",
        "i was amazed at how many people turned up to help clean the beach",
        "i feel astonished by how much i have changed in just one year",
        "the ending of the series caught me completely off guard",
        "i was shocked when the quietest student in class asked the best question",
        "i feel bewildered that my tiny blog post got thousands of views overnight",
        "i never thought my dad would take up painting at seventy",
        "i was surprised to see a fox sitting calmly in the middle of the city",
        "i feel amazed whenever i look at the stars far away from the city lights",
        "my little sister beat me at chess for the first time",
        "the old shop turned out to have a hidden garden in the back",
        "i was caught off guard when my manager asked me to lead the meeting",
        "i feel shocked at how fast the year has gone by",
        "i couldn't believe my eyes when the price tag said ninety percent off",
        "my friend showed up with her hair dyed bright blue and i barely recognized her",
    ],
}

# --------------------------------------------------------------------------
# Fragment pools for composed sentences
# --------------------------------------------------------------------------
# A pool: "mild" feeling words take any intensifier ("a bit sad"), "strong"
# ones only the emphatic ones ("so devastated", never "a bit devastated").
# "now" causes follow "i feel X ..." (present), "then" causes follow
# "i was / i felt X ..." (past). A "then" cause that starts with "when " can
# also stand alone as a clause ("the results came in and ...").

POOLS: dict[str, list[dict]] = {
    "sadness": [
        {  # loss, distance, loneliness
            "mild": ["sad", "lonely", "down", "miserable", "unhappy", "blue", "gloomy"],
            "strong": ["heartbroken", "devastated", "empty"],
            "now": [
                "since my best friend moved to the other side of the country",
                "now that the house is so quiet in the evenings",
                "whenever i look through old photos from school",
                "every time i walk past the house i grew up in",
                "when i come home to an empty apartment",
                "thinking about all the friends i have lost touch with",
                "without my old dog curled up at the foot of the bed",
                "knowing i won't be home for the holidays this year",
                "about how things ended with my brother",
                "whenever someone mentions my grandfather",
                "because my messages keep going unanswered",
                "now that my sister lives abroad",
                "when i see families together at the park",
                "since my friends stopped inviting me out",
                "listening to the songs we used to play on road trips",
                "when i remember how close we used to be",
                "because i can't afford to visit my family this year",
                "about the garden we had to leave behind when we moved",
                "when the phone stays silent all weekend",
                "since my grandmother went into the care home",
                "about losing the little bookshop on our street",
                "on these grey winter afternoons",
                "whenever i pass the bench where we used to sit",
                "since the last of my college friends moved away",
            ],
            "then": [
                "when my cat didn't come home",
                "after my grandfather's funeral",
                "when i read the last letter my grandmother wrote me",
                "when my friends made plans without me",
                "when i saw that my childhood home had been torn down",
                "after saying goodbye at the airport",
                "when my best friend told me she was moving away",
                "when the vet said there was nothing more they could do",
                "when my brother forgot my birthday",
                "when i realised nobody was coming to the party",
                "after we had to give our dog to another family",
                "when i packed up my desk on my last day",
                "when i heard our old house had been sold",
                "when the relationship finally ended",
                "when i came home and the house was completely quiet",
                "when my little sister left for college",
                "when the old oak tree in our yard was cut down",
                "when i found my dad's old jacket in the closet",
                "when the group chat went quiet after the move",
                "after the last night in our old apartment",
                "when my pen pal stopped writing back",
            ],
        },
        {  # letdowns and failure
            "mild": ["sad", "down", "disappointed", "discouraged", "deflated", "gutted"],
            "strong": ["crushed", "defeated", "hopeless", "devastated"],
            "now": [
                "after yet another rejection letter",
                "about the job i had to turn down",
                "since my team was cut from the league",
                "about how badly the audition went",
                "because all my hard work seems to lead nowhere",
                "about failing the same exam twice",
                "now that the trip we saved for is off",
                "because my book proposal keeps getting turned down",
                "about the scholarship i didn't get",
                "since the bakery i worked so hard on had to close",
                "because every plan i make seems to fall apart",
                "about missing my sister's graduation",
            ],
            "then": [
                "when the trip we had planned for months was cancelled",
                "when my application was turned down again",
                "when i found out i didn't get the scholarship",
                "when the band i loved announced their final show",
                "after my team lost the final",
                "after i failed my driving test for the third time",
                "when my manuscript came back with a polite no",
                "when the house we wanted went to another buyer",
                "when my grades came back lower than i hoped",
                "after my painting was left out of the exhibition",
                "when the shop i worked at for years announced it was closing",
                "when i was the only one not picked for the trip",
            ],
        },
    ],
    "joy": [
        {  # success and good news
            "mild": ["happy", "excited", "delighted", "pleased", "giddy"],
            "strong": ["thrilled", "overjoyed", "ecstatic", "elated", "over the moon"],
            "now": [
                "about the trip we booked for the summer",
                "now that the exams are finally over",
                "with my new job going so well",
                "about how well the garden is growing",
                "about the concert this weekend",
                "about finally having my own place",
                "when i see how much my students have improved",
                "since my band started playing again",
                "about starting my new course next month",
                "about how the week has turned out",
                "now that the renovations are done",
                "since my little shop started getting regular customers",
                "about the new puppy coming home on saturday",
                "now that my short story is going to be published",
            ],
            "then": [
                "when the results came in",
                "when i got the call offering me the job",
                "when our team won the championship",
                "when i crossed the finish line",
                "when the acceptance letter arrived",
                "when i saw my test score",
                "when my visa was approved",
                "when we finally got the keys to our new flat",
                "when my sister announced she was expecting",
                "when my painting was chosen for the exhibition",
                "when my article was published",
                "when we found the perfect puppy at the shelter",
                "when the whole audience started clapping",
                "after i finished my first half marathon",
                "when the bank approved our loan",
                "when i got my first paycheck",
                "when our little garden produced its first strawberries",
                "when my brother passed his final exams",
                "when the concert tickets arrived in the mail",
                "after my presentation went perfectly",
                "when i found out i had passed with distinction",
                "when my friends showed up with a picnic for my birthday",
                "when i finally paid off my credit card",
                "when my cake won first prize at the village fair",
            ],
        },
        {  # relief after worry
            "mild": ["relieved", "grateful", "happy", "glad", "thankful"],
            "reactions": ["i cried happy tears", "i finally let out the breath i'd been holding",
                          "i hugged everyone in the room", "i slept properly for the first time in weeks",
                          "i called everyone to share the news", "i laughed with relief"],
            "strong": ["overjoyed", "so relieved i could cry"],
            "now": [
                "now that my dad is home from the hospital",
                "knowing my family is healthy and safe",
                "knowing that the hard part is behind me",
                "now that the storm has passed and everyone is fine",
                "that the surgery is finally behind us",
                "now that the test results came back clear",
                "that my brother made it home safely",
                "now that the move is finally over",
            ],
            "then": [
                "when i heard the surgery had gone well",
                "when my grandfather came home from the hospital",
                "when the flight landed and i saw my family waiting",
                "when the doctor said it was nothing serious",
                "when our lost cat turned up on the doorstep",
                "when the last exam was finally over",
                "when the plumber said the damage wasn't as bad as we feared",
                "when my sister called to say she had arrived safely",
            ],
        },
        {  # small pleasures
            "mild": ["happy", "cheerful", "content", "joyful", "peaceful", "glad", "energetic", "carefree"],
            "strong": ["blissful", "on top of the world"],
            "now": [
                "now that spring is finally here",
                "after a long walk in the sunshine",
                "since i started painting again",
                "when the whole family gets together for dinner",
                "after finishing a big project at work",
                "since i started waking up early to run",
                "every time i hear that song on the radio",
                "after a good night's sleep",
                "when the weekend finally arrives",
                "after cooking a big meal for my friends",
                "with the sun on my face and nowhere to be",
                "whenever we go to the beach",
                "after a swim in the lake",
                "sitting in the garden with my morning coffee",
                "when the first warm evening of the year arrives",
                "after a lazy sunday with nothing planned",
                "whenever the market has fresh strawberries",
                "when the kids are laughing in the next room",
            ],
            "then": [
                "when the sun finally came out after a week of rain",
                "when we spent the whole afternoon at the beach",
                "when my neighbor brought over a basket of fresh apples",
                "after our picnic by the river",
                "when the first snow started falling",
                "after a long bike ride through the hills",
                "when we sang along to old songs on the drive home",
                "when i found a perfect seat by the window in the cafe",
            ],
        },
    ],
    "love": [
        {  # being loved and cared for
            "mild": ["loved", "cherished", "cared for", "adored", "supported", "appreciated", "treasured"],
            "strong": ["safe and loved", "completely loved"],
            "now": [
                "when my partner makes me tea without being asked",
                "whenever my little sister holds my hand",
                "when my friends check in on me after a hard day",
                "every time my dog waits for me by the window",
                "when my mom sends me a message just to say goodnight",
                "when my grandmother saves the biggest slice for me",
                "whenever my partner warms up the car for me on cold mornings",
                "when my kids make me breakfast in bed",
                "whenever my best friend texts me a song that reminds her of me",
                "when my dad asks about my day and really listens",
                "every time my partner reaches for my hand in a crowd",
                "when my roommate leaves the porch light on for me",
                "whenever my nephew runs into my arms",
                "when my brother calls just to hear my voice",
            ],
            "then": [
                "when my partner left a note in my coat pocket",
                "when my mom drove across town just to bring me soup",
                "when my friends stayed up all night to help me move",
                "when my grandfather gave me his old pocket watch",
                "when my partner remembered the name of my childhood teddy bear",
                "when my sister flew in for my graduation",
                "when my best friend made me a playlist for my long drive",
                "when my dad fixed up my old bike so i could ride again",
                "when my partner held my hand through the whole appointment",
                "when my little cousin drew a picture of the two of us",
                "when my neighbors left flowers on my step after my surgery",
                "when my grandma called me her favorite person",
                "when he wrapped his scarf around me at the bus stop",
                "when my friends showed up with dinner after my long week",
                "when she read my letter and hugged me for a long time",
            ],
        },
        {  # tenderness toward others
            "mild": ["tender", "affectionate", "warm inside", "soft hearted"],
            "strong": ["full of love", "overflowing with love"],
            "now": [
                "watching my baby niece sleep",
                "when my grandmother falls asleep in her chair",
                "whenever my partner hums while cooking",
                "watching my parents hold hands on their evening walks",
                "when my son tells me about his day in tiny detail",
                "whenever my cat curls up on my lap",
                "watching my little brother look after his puppy",
                "when my partner gets excited about bird watching",
                "whenever my daughter reads aloud to her toys",
                "watching my grandparents do the crossword together",
                "when my best friend laughs so hard she snorts",
                "when i tuck my kids into bed at night",
            ],
            "then": [
                "when my nephew fell asleep holding my finger",
                "when my partner danced with me in the rain",
                "when my daughter gave her last cookie to her friend",
                "when i saw my parents slow dancing in the kitchen",
                "when my puppy fell asleep on my chest",
                "when my grandmother kissed my cheek goodbye",
                "when my son put his tiny hand in mine",
                "when my partner said goodnight to every one of our plants",
            ],
        },
        {  # memories of people we love
            "mild": ["sentimental", "nostalgic", "romantic", "wistful"],
            "strong": ["hopelessly romantic", "deeply sentimental"],
            "now": [
                "looking at photos from our first holiday together",
                "whenever i hear the song from our first dance",
                "when i find old letters from my grandmother",
                "thinking about the night we met",
                "every time i wear the ring my grandmother gave me",
                "reading the messages we sent each other when we first met",
                "whenever i drive past the cafe where we had our first date",
                "when i smell the perfume my mom always wore",
            ],
            "then": [
                "when we went back to the beach where we got engaged",
                "when my partner found our first cinema tickets in an old book",
                "when we watched our wedding video again",
                "when i found the birthday card my dad made me years ago",
                "when we visited the town where my parents fell in love",
                "when i read the notes we used to pass in class",
            ],
        },
    ],
    "anger": [
        {  # everyday annoyances
            "mild": ["annoyed", "irritated", "frustrated", "cranky", "agitated", "mad", "grumpy"],
            "strong": ["fed up", "furious", "livid"],
            "now": [
                "when people cut in line at the supermarket",
                "when the neighbors leave their rubbish by my door",
                "whenever my train is late for the third time in a week",
                "when my roommate leaves dirty dishes in the sink for days",
                "every time the website logs me out in the middle of a form",
                "when people talk loudly on the phone in the quiet carriage",
                "whenever someone parks across two spaces",
                "when my brother borrows my things without asking",
                "about the constant roadworks outside my window",
                "when customer service keeps putting me on hold",
                "about the printer jamming every single morning",
                "when the upstairs neighbor vacuums at midnight",
                "whenever people leave shopping carts in the middle of the car park",
                "when my phone updates itself and moves everything around",
                "about paying for a gym that is always closed",
                "when people leave voice notes that go on for five minutes",
                "when my sister borrows my car and leaves the tank empty",
                "whenever the self checkout tells me there's an unexpected item",
            ],
            "then": [
                "when the bus drove past without stopping",
                "when the delivery driver left my parcel in the rain",
                "when someone took my parking spot right as i was reversing in",
                "when the cafe got my order wrong for the third time",
                "when my flight was delayed for the fourth time",
                "when the shop charged me twice for the same thing",
                "when my roommate finished the milk and put the empty carton back",
                "when the website crashed right before i hit submit",
                "when the neighbors started drilling at seven on a sunday",
                "when my laptop restarted and i lost two hours of work",
                "when the repair guy didn't show up again",
                "when someone let the door slam in my face",
                "when the cinema started the film half an hour late",
                "when the same cold caller rang for the fifth time",
                "when the train sat outside the station for forty minutes",
                "when my flatmate used all the hot water again",
                "when the app charged me for a subscription i had cancelled",
            ],
        },
        {  # unfairness and betrayal
            "mild": ["angry", "resentful", "bitter", "offended", "insulted", "mad"],
            "strong": ["furious", "livid", "outraged", "seething", "enraged"],
            "now": [
                "about how my manager talks to the new staff",
                "that my landlord keeps ignoring the mould in the bathroom",
                "that my coworker keeps taking credit for my work",
                "about the way the council ignored our petition",
                "that nobody on the team pulls their weight but me",
                "about being blamed for a mistake i didn't make",
                "that my friend keeps breaking promises",
                "that the company cut our pay while the bosses got bonuses",
                "about the lies my ex told our friends",
                "that the factory keeps dumping waste in the river",
                "that my sister keeps sharing my private messages",
                "about the way they treated my grandmother at the clinic",
                "that my neighbor keeps blaming my kids for his broken fence",
            ],
            "then": [
                "when my coworker presented my idea as his own",
                "when i found out my friend had been lying to me for months",
                "when the landlord kept our deposit for no reason",
                "when they gave the promotion to someone who had been there two weeks",
                "when my brother read my messages without asking",
                "when the referee ignored the obvious foul",
                "when the company changed the contract without telling us",
                "when my teammate blamed me for his mistake in front of everyone",
                "when the mechanic charged us for repairs he never did",
                "when they cancelled the youth club without asking anyone",
                "when the shop refused to refund the broken heater",
                "when i heard what they had said about me behind my back",
                "when the school punished my son for something another kid did",
            ],
        },
    ],
    "fear": [
        {  # worry about what's coming
            "mild": ["nervous", "anxious", "worried", "uneasy", "apprehensive", "tense", "scared", "afraid"],
            "reactions": ["my stomach was in knots", "i didn't sleep a wink", "i couldn't eat a thing",
                          "i kept pacing around the kitchen", "my mind kept racing", "my hands were shaking",
                          "i felt sick to my stomach"],
            "strong": ["terrified", "on edge", "sick with worry"],
            "now": [
                "about the job interview tomorrow",
                "about my driving test next week",
                "about the results of my blood test",
                "about moving to a city where i don't know anyone",
                "about giving a speech at my brother's wedding",
                "about the storm that's supposed to hit tonight",
                "about flying on my own for the first time",
                "about the layoffs everyone keeps whispering about",
                "about my grandmother's operation on thursday",
                "about starting at a new school halfway through the year",
                "about the bills i can't pay this month",
                "whenever my phone rings late at night",
                "every time my boss asks for a quick word",
                "before every exam no matter how much i study",
                "about telling my parents i want to drop out",
                "about my first night shift at the hospital",
                "about the long drive through the mountains tomorrow",
                "that i'll freeze up during my recital",
                "about the meeting with the bank on monday",
            ],
            "then": [
                "when the doctor called me back in for more tests",
                "before my first solo flight",
                "when my manager asked to see me in her office",
                "when my daughter didn't answer her phone all evening",
                "the night before my final exams",
                "when the letter from the tax office arrived",
                "when my dad was taken to the hospital",
                "before i walked into the audition room",
                "when the company announced it was restructuring",
                "when my brother stopped answering his messages",
                "waiting for the biopsy results",
                "when the flood warning came through on my phone",
            ],
        },
        {  # immediate danger
            "mild": ["scared", "frightened", "afraid", "shaky", "panicky", "jumpy", "alarmed"],
            "intensifiers": ["", "", "so", "really", "incredibly"],  # no "a bit scared" of real danger
            "reactions": ["my heart was pounding", "i froze on the spot", "i couldn't breathe properly",
                          "my legs went weak", "i couldn't stop trembling", "i screamed without thinking",
                          "my whole body went cold"],
            "strong": ["terrified", "petrified", "frozen with fear", "scared stiff"],
            "now": [
                "walking home alone at night",
                "whenever i hear scratching noises in the attic",
                "every time the plane hits turbulence",
                "when i have to drive on icy roads",
                "in crowded places where i can't see the exit",
                "whenever a big dog runs toward me",
                "when the wind howls around the house at night",
                "standing near the edge of tall buildings",
                "in the underground car park after dark",
                "when thunder shakes the windows",
                "when i'm alone in the house and the floor creaks",
                "swimming where i can't see the bottom",
            ],
            "then": [
                "when i heard footsteps behind me in the alley",
                "when the car skidded on the ice",
                "when the lights went out in the middle of the storm",
                "when someone tried the handle of my front door",
                "when the plane dropped suddenly",
                "when a stranger followed me off the bus",
                "when i woke up to the smell of smoke",
                "when the dog broke free of its lead and ran at me",
                "when the lift stopped between floors",
                "when the current started pulling me out to sea",
                "when i lost sight of my son at the fair",
                "when the ladder started to wobble under me",
                "when the shelf collapsed right next to me",
                "when something moved in the bushes on the dark trail",
                "when the boat started taking on water",
            ],
        },
    ],
    "surprise": [
        {  # sudden things
            "mild": ["startled", "shocked", "surprised", "rattled"],
            "reactions": ["i nearly jumped out of my skin", "i let out a little shriek",
                          "i spilled my tea everywhere", "i nearly dropped my phone",
                          "my heart skipped a beat", "i burst out laughing"],
            "strong": ["caught off guard", "completely startled"],
            "now": [],
            "then": [
                "when the door slammed shut behind me",
                "when a bird flew straight into the kitchen",
                "when my phone rang in the middle of the silent film",
                "when the fire alarm went off during the exam",
                "when a frog jumped out of my watering can",
                "when the balloon popped right next to my ear",
                "when the power came back on with every light blazing",
                "when my cat leapt out from behind the curtains",
                "when the street performer suddenly started singing behind me",
                "when a squirrel landed on my picnic blanket",
            ],
        },
        {  # unexpected news and reveals
            "mild": ["surprised", "shocked", "stunned", "taken aback", "bewildered"],
            "reactions": ["i didn't know what to say", "my jaw dropped", "i had to sit down",
                          "i kept asking if it was a joke", "i couldn't find the words",
                          "i burst out laughing in disbelief", "i just stood there blinking"],
            "strong": ["speechless", "dumbfounded", "completely stunned", "gobsmacked", "astonished"],
            "now": [
                "that my shy little brother wants to study acting",
                "that the old factory is being turned into a theatre",
                "that nobody noticed the mistake in the report",
                "that my grandmother has started learning to skateboard",
                "that the quiet neighbor turns out to be a chess champion",
                "that my tiny town made the national news",
                "that my parents are going backpacking next summer",
                "that i actually like running now",
                "that the bakery is giving away bread for free on sundays",
            ],
            "then": [
                "when my quiet coworker announced she was sailing around the world",
                "when my parents told me they were moving to the coast",
                "when my boss offered me a promotion out of the blue",
                "when the letter said i had won the writing contest",
                "when my brother turned up at my door after years abroad",
                "when i found out my best friend was getting married next month",
                "when the landlord lowered our rent",
                "when my grandfather revealed he had once been a circus juggler",
                "when my old teacher turned up at my book signing",
                "when the underdog team won the cup",
                "when the band i love walked into our little cafe",
                "when my sister said she was quitting law to become a baker",
                "when i learned that my neighbor was a retired astronaut",
                "when my name was called as the winner of the raffle",
                "when my friends told me they had been planning the party for months",
            ],
        },
        {  # wonder and being impressed
            "mild": ["amazed", "impressed", "surprised"],
            "reactions": ["my jaw dropped", "i just stood there staring", "i couldn't stop talking about it",
                          "i had to take a picture", "i could hardly believe my eyes"],
            "strong": ["blown away", "completely amazed", "astonished", "floored"],
            "now": [
                "by how quickly my little niece is learning to read",
                "at how many birds visit the feeder every morning",
                "by how much the neighborhood has changed in a year",
                "at how fast the new bridge went up",
                "by how big the puppy has grown in just a month",
                "at how well the old camera still works",
                "by how kind strangers can be when you are lost",
                "by how much my grandfather still remembers about the war years",
                "at how green the hills are after all the rain",
            ],
            "then": [
                "when i saw the northern lights for the first time",
                "when my nephew solved the puzzle in under a minute",
                "when the tiny cafe served the best meal of our trip",
                "when the whole town showed up to repaint the school",
                "when my first sourdough loaf actually turned out well",
                "when the orchestra of children played without a single mistake",
                "when the old fishing boat made it all the way across the bay",
                "when my shy student gave a brilliant speech",
            ],
        },
    ],
}

INTENSIFIERS_MILD = ["", "", "", "so", "really", "very", "a bit", "pretty", "kind of", "a little", "incredibly"]
INTENSIFIERS_STRONG = ["", "", "", "so", "really", "absolutely"]
# Some feeling words are already phrases; they only take "" or "so"/"really".
NO_INTENSIFIER = {
    "over the moon", "on top of the world", "so relieved i could cry", "safe and loved",
    "completely loved", "warm inside", "soft hearted", "full of love", "overflowing with love",
    "hopelessly romantic", "deeply sentimental", "frozen with fear", "scared stiff",
    "sick with worry", "completely startled", "completely stunned", "completely amazed",
    "blown away", "speechless", "gobsmacked", "dumbfounded", "empty",
    "cared for", "loved",
}
# Love words that sound odd after "very", "pretty", "kind of", ...
LOVE_INTENSIFIERS = ["", "", "", "so", "really", "truly"]

# Words that read well after "i get" ("i get down" or "i get peaceful" do not).
GET_OK = {
    "sad", "lonely", "miserable", "gloomy", "annoyed", "irritated", "frustrated", "cranky",
    "agitated", "mad", "grumpy", "furious", "livid", "angry", "nervous", "anxious", "worried",
    "scared", "afraid", "frightened", "jumpy", "panicky", "tense", "uneasy", "happy", "excited",
    "giddy", "cheerful", "up",  # "fed up"
}
# Calm words that sound odd after "a bit", "kind of", "pretty", ...
CALM = {"peaceful", "content", "carefree", "grateful", "thankful", "blissful", "gentle",
        "tender", "affectionate", "sentimental", "nostalgic", "romantic", "wistful", "cherished",
        "adored", "supported", "appreciated", "treasured"}

NOW_OPENERS = ["lately", "these days", "right now", "tonight", "this week", "honestly"]
HABIT_OPENERS = ["lately", "these days", "honestly", "some days"]
THEN_OPENERS = ["yesterday", "last night", "earlier today", "this morning", "last week",
                "on friday", "today", "over the weekend"]

REACTIONS: dict[str, list[str]] = {
    "sadness": [
        "i cried for most of the evening", "i just wanted to be alone",
        "i went to bed early and stared at the ceiling", "i couldn't eat anything all day",
        "i sat in the car for a long time before going inside",
        "i didn't feel like talking to anyone", "i couldn't hold back the tears",
        "everything felt grey for days", "i spent the night listening to sad songs",
        "i barely slept", "my chest felt heavy all afternoon",
        "i wrapped myself in a blanket and didn't move",
    ],
    "joy": [
        "i couldn't stop smiling", "i danced around the kitchen", "i laughed out loud on the bus",
        "i called my mom right away to tell her", "i jumped up and down like a little kid",
        "i grinned for the rest of the day", "i hugged everyone in the room",
        "i sang all the way home", "it felt like i was walking on air",
        "i treated myself to a big slice of cake", "the whole day felt brighter",
        "i could hardly sit still",
    ],
    "love": [
        "my heart just melted", "i wanted to hold on to that moment forever",
        "i teared up a little", "i realised how lucky i was",
        "i felt warm all the way through", "i couldn't stop smiling",
        "i felt like the luckiest person alive", "my heart felt so full",
    ],
    "anger": [
        "i had to walk away before i said something", "i slammed the door behind me",
        "i wanted to scream", "my face went hot",
        "i typed an angry reply and then deleted it", "i couldn't calm down for an hour",
        "i ranted to my sister about it all evening", "i clenched my jaw so hard it hurt",
        "i stomped around the flat for ages", "i had to count to ten before answering",
    ],
    "fear": [
        "my heart was pounding", "my hands were shaking", "i couldn't breathe properly",
        "i froze on the spot", "i didn't sleep a wink", "i kept looking over my shoulder",
        "my stomach was in knots", "my legs went weak", "i felt sick to my stomach",
        "i couldn't stop trembling",
    ],
    "surprise": [
        "i didn't know what to say", "my jaw dropped", "i had to read it twice",
        "i nearly dropped my phone", "i just stood there blinking",
        "i burst out laughing in disbelief", "i had to sit down",
        "i kept asking if it was a joke", "i couldn't find the words",
    ],
}

NOW_TAILS: dict[str, list[str]] = {
    "sadness": ["and i just want to stay in bed", "and nothing seems to help",
                "and i don't know who to talk to about it", "and the evenings feel so long",
                "and i keep crying over little things"],
    "joy": ["and i can't stop smiling", "and nothing can ruin my mood today",
            "and i want everyone to know", "and life feels good right now"],
    "love": ["and my heart feels full", "and i never want to take it for granted",
             "and i feel like the luckiest person alive"],
    "anger": ["and i'm done being polite about it", "and i can feel my jaw clenching",
              "and i don't know how much more i can take", "and it ruins my whole day"],
    "fear": ["and my stomach is in knots", "and i can't sleep properly",
             "and i can't stop imagining the worst", "and my heart starts racing"],
    "surprise": ["and i still can't quite believe it", "and i keep telling everyone about it"],
}

# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------


def _pick_intensifier(rng: random.Random, label: str, pool: dict, word: str, strong: bool) -> str:
    if word in NO_INTENSIFIER:
        return rng.choice(["", "", "so", "really"]) if word in {"loved", "cared for", "empty"} else ""
    if "intensifiers" in pool and not strong:
        choices = pool["intensifiers"]
    elif label == "love" or word in CALM:
        choices = LOVE_INTENSIFIERS
    else:
        choices = INTENSIFIERS_STRONG if strong else INTENSIFIERS_MILD
    return rng.choice(choices)


def _feel(rng: random.Random, label: str, pool: dict) -> str:
    strong = rng.random() < 0.3 and bool(pool["strong"])
    word = rng.choice(pool["strong"] if strong else pool["mild"])
    inten = _pick_intensifier(rng, label, pool, word, strong)
    return f"{inten} {word}".strip()


def _compose(rng: random.Random, label: str, pool: dict, tense: str, cause: str) -> str:
    feel = _feel(rng, label, pool)
    bare = rng.choice(pool["mild"])  # for "can't help feeling X", "remember feeling X"
    reactions = pool.get("reactions", REACTIONS[label])
    if tense == "now":
        if label == "surprise":  # "that ..." / "by how ..." causes: a state, not a mood
            forms = [
                lambda: f"i'm {feel} {cause}",
                lambda: f"i'm {'' if ' still ' in cause else 'still '}{bare} {cause}",
                lambda: f"honestly i'm {feel} {cause}",
                lambda: f"i'm {feel} {cause} {rng.choice(NOW_TAILS[label])}",
            ]
            return rng.choice(forms)()
        habitual = cause.startswith(("when ", "whenever ", "every time ", "before every "))
        openers = HABIT_OPENERS if habitual else NOW_OPENERS
        forms = [
            lambda: f"i feel {feel} {cause}",
            lambda: f"{rng.choice(openers)} i feel {feel} {cause}",
            lambda: f"i can't help feeling {bare} {cause}",
            lambda: f"i feel {feel} {cause} {rng.choice(NOW_TAILS[label])}",
        ]
        if habitual:
            forms.append(lambda: f"i always feel {bare} {cause}")
            if label != "love" and feel.split()[-1] in GET_OK:
                forms.append(lambda: f"i get {feel} {cause}")
        else:
            forms.append(lambda: f"i've been feeling {feel} {cause}")
            if label != "love":
                forms.append(lambda: f"i'm {feel} {cause}")
        return rng.choice(forms)()
    # past
    dated = cause.startswith(("when ", "after "))  # a time opener does not clash with it
    forms = [
        lambda: f"i felt {feel} {cause}",
        lambda: f"i remember feeling {bare} {cause}",
        lambda: f"i felt {feel} {cause} and {rng.choice(reactions)}",
        lambda: f"{rng.choice(reactions)} {cause}",
    ]
    if dated:
        forms.append(lambda: f"{rng.choice(THEN_OPENERS)} i felt {feel} {cause}")
    if label != "love":
        forms.append(lambda: f"i was {feel} {cause}")
        if dated:
            forms.append(lambda: f"{rng.choice(THEN_OPENERS)} i was {feel} {cause}")
    if cause.startswith("when "):
        event = cause[len("when "):]
        forms += [
            lambda: f"{event} and {rng.choice(reactions)}",
            lambda: f"{event} and i felt {feel}",
        ]
    return rng.choice(forms)()


def _clean(text: str) -> str:
    return " ".join(text.split())


def compose_label(rng: random.Random, label: str, n: int, taken: set[str]) -> list[str]:
    """Compose n distinct sentences for one label, spreading the causes evenly."""
    slots = [(pi, tense, cause)
             for pi, pool in enumerate(POOLS[label])
             for tense in ("now", "then")
             for cause in pool[tense]]
    uses: Counter = Counter()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"{label}: could only compose {len(out)} of {n} sentences; add fragments")
        least = min(uses[s] for s in slots)
        if least >= MAX_USES_PER_CAUSE:
            raise RuntimeError(f"{label}: every cause used {MAX_USES_PER_CAUSE} times; add fragments")
        slot = rng.choice([s for s in slots if uses[s] == least])
        pi, tense, cause = slot
        text = _clean(_compose(rng, label, POOLS[label][pi], tense, cause))
        words = len(text.split())
        if text in taken or not MIN_WORDS <= words <= MAX_WORDS:
            continue
        taken.add(text)
        uses[slot] += 1
        out.append(text)
    return out


def build() -> tuple[list[dict], list[dict]]:
    rng = random.Random(SEED)
    taken: set[str] = set()
    rows: list[dict] = []
    for label in LABELS:
        for text in HANDWRITTEN[label]:
            text = _clean(text)
            if text in taken:
                raise ValueError(f"duplicate hand-written sentence: {text!r}")
            taken.add(text)
            rows.append({"text": text, "label": label})
    for label in LABELS:
        n = TARGETS[label] - len(HANDWRITTEN[label])
        rows.extend({"text": t, "label": label} for t in compose_label(rng, label, n, taken))
    rng.shuffle(rows)
    small: list[dict] = []
    for label in LABELS:
        of_label = [r for r in rows if r["label"] == label]
        small.extend(rng.sample(of_label, SMALL_PER_LABEL))
    order = {id(r): i for i, r in enumerate(rows)}
    small.sort(key=lambda r: order[id(r)])  # same relative order as the full file
    return rows, small


def _dump(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def validate(rows: list[dict]) -> None:
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts)), "duplicate texts"
    for r in rows:
        assert r["label"] in LABELS, r
        n = len(r["text"].split())
        assert MIN_WORDS <= n <= MAX_WORDS, r
        assert r["text"] == r["text"].lower(), r
        assert r["text"][-1] not in ".!?", r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--check", action="store_true",
                        help="do not write; fail if the files in --out differ from a fresh build")
    args = parser.parse_args(argv)
    rows, small = build()
    validate(rows)
    files = {"emotions.jsonl": _dump(rows), "emotions_small.jsonl": _dump(small)}
    if args.check:
        stale = [n for n, body in files.items()
                 if not (args.out / n).exists() or (args.out / n).read_text(encoding="utf-8") != body]
        if stale:
            print(f"out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        print("up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (args.out / name).write_text(body, encoding="utf-8")
    hand = sum(len(v) for v in HANDWRITTEN.values())
    counts = Counter(r["label"] for r in rows)
    print(f"wrote {len(rows)} texts ({hand} hand-written, {len(rows) - hand} composed) "
          f"and {len(small)} in the small subset to {args.out}")
    for label in LABELS:
        print(f"  {label:9s} {counts[label]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
