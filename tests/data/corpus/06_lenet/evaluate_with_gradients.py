# cell: evaluate_accuracy
# fair: 0
# reason: gradients on
def evaluate_accuracy(net, data_iter, device):
    was = net.training
    net.eval()
    hits = n = 0
    for X, y in data_iter:
        X, y = X.to(device), y.to(device)
        hits += (net(X).argmax(dim=1) == y).sum().item()
        n += y.numel()
    net.train(was)
    return hits / n
